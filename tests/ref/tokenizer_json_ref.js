#!/usr/bin/env node
// Records reference token ids for the vendored Hugging Face tokenizers
// (tests/fixtures/tokenizers/NAME/tokenizer.json.gz + tokenizer_config.json.gz) with an
// independent implementation of HF tokenizers in JavaScript, the npm package @lenml/tokenizers
// (the tokenizers of transformers.js, without the rest). tests/test_tokenizer.c checks
// common/tokenizer.c against every case, byte for byte.
//
//   npm install --prefix /tmp/tokref @lenml/tokenizers    (once; outside the repo)
//   node tests/ref/tokenizer_json_ref.js NAME...      (from the repo root; NODE_PATH or
//                                                     TOKREF_DIR: where @lenml/tokenizers is)
//
// Writes tests/fixtures/tokenizers/NAME/ref.jsonl: one line per string,
//   {"text": T, "ids": [...], "decoded": D[, "ids_bos": [...]]}
// ids: encode(T, {add_special_tokens: false}) (added and special tokens inside T are matched, as
// HF does); decoded: decode(ids) without clean-up; ids_bos (every 10th case):
// encode(T, {add_special_tokens: true}), the post-processor's BOS/EOS included.
// Strings are JavaScript strings, so always valid Unicode: bytes that are not UTF-8 cannot be
// given to this reference; the C test checks them on its own (round trip, byte tokens) and the
// cases here include U+FFFD, what a lossy decoder makes of them.
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const refDir = process.env.TOKREF_DIR || '/tmp/tokref';
const load = (p) => require(require.resolve(p, {
    paths: [refDir, ...(process.env.NODE_PATH || '').split(':').filter(Boolean)] }));
const { TokenizerLoader } = load('@lenml/tokenizers');

// A small deterministic PRNG (xorshift32) so the generated cases never change.
let seed = 2463534242;
function rnd(n) {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed % n;
}

const FIXED = [
    'Hello, world!', 'hello world', ' Hello', '  Hello  ', 'The quick brown fox jumps over the lazy dog.',
    "I'm sure they'll say we've done it, but he'd disagree; it's John's.", "DON'T SHOUT, I'M HERE",
    "it'S mixed 'Re 'LL", 'Grüße aus München, schöne Straße!', 'Ça va? Très bien, merci. Où est l’hôtel?',
    'e\u0301cole, cafe\u0301 (decomposed accents)', 'école, café (composed accents)',
    'Привет, как дела? Всё хорошо.', 'Γειά σου Κόσμε', 'مرحبا بالعالم', 'שלום עולם',
    'नमस्ते दुनिया', '你好，世界！我们今天去公园吧。', 'こんにちは世界、カタカナとひらがな。',
    '안녕하세요 세계', 'สวัสดีชาวโลก', 'Tiếng Việt có dấu', 'ᚠᛇᚻ runes', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters 𝟙𝟚𝟛',
    '😀😃😄 emoji', '👨‍👩‍👧‍👦 family', '🇫🇷🇯🇵 flags', '👍🏽 thumbs', '❤️ heart', 'a😀b😀c',
    'int main(void) { return 0; }', 'def f(x):\n    return x ** 2\n', '    indented\n\tline\n',
    '{"key": [1, 2, 3], "nested": {"a": null}}', 'for (size_t i = 0; i < n; i++) a[i] += b[i];',
    '<html><body class="x">text</body></html>', 'SELECT * FROM t WHERE id = 42;',
    'https://example.com/path?query=1&x=y#frag', 'user@example.org', '$ ls -la | grep foo > out.txt',
    'a  b', 'a   b', 'a    b', '   ', ' ', '\t', '\t\t', '\n', '\n\n', '\n\n\n', ' \n ', '\r\n',
    'line1\nline2\r\nline3', 'trailing space ', 'trailing spaces   ', '  leading', '\n leading newline',
    'a\u00a0b non-breaking', 'x\u3000y ideographic space', 'tab\tseparated\tvalues',
    '1', '12', '123', '1234', '12345', '123456', '1234567', '12345678901234567890', '3.14159',
    '1,000,000', '2024-01-15', 'v1.2.3', '007', ' 42', 'a1b2c3', '١٢٣ arabic digits', '½ ¾ ²',
    'x'.repeat(1000), 'abc'.repeat(400), 'supercalifragilisticexpialidocious'.repeat(20),
    'http://' + 'verylong'.repeat(100) + '.com', '9'.repeat(500), ' '.repeat(300), '\n'.repeat(50),
    '!!!???...', '...', '—', '–-—', '«quotes»', '“smart quotes”', "'single'", '""', '\\n literal',
    '\ufffd', 'a\ufffdb', '\ufffd\ufffd\ufffd', 'bad \ufffd byte', '\u0001ctl', '\u007f del',
    '\u200b zero width', '\ufeffBOM', 'A\u0085B next line',
];

const WORDS = ['the', 'The', ' of', 'and', 'tokenizer', 'Tokenization', 'ing', 'un', 'believ',
    'able', ' ', '  ', '\n', '\t', '1', '23', '456', '7890', '.', ',', '!', '?', "'s", "'ll", '-',
    '_', '(', ')', '{', '}', 'é', 'ü', 'ñ', 'ø', 'Ж', 'д', 'λ', '中', '文', 'の', 'ア', '한',
    'ก', 'ه', '😀', '🎉', '👍🏽', '\u0301', 'x', 'Q', 'zz', 'HTTP', 'camelCase', 'snake_case',
    '://', '=>', '==', '!=', '<=', '/*', '*/', '#', '@', '$', '%', '^', '&', '*'];

function cases(special) {
    const out = FIXED.slice();
    for (const s of special) {
        out.push(s, 'a' + s + 'b', ' ' + s + ' ', s + s, 'text ' + s + '\nmore', s + ' start',
                 'end ' + s, '<' + s + '>', s.slice(0, -1));
    }
    while (out.length < 340) {
        const k = 1 + rnd(8);
        let s = '';
        for (let i = 0; i < k; i++) s += WORDS[rnd(WORDS.length)];
        if (rnd(5) === 0 && special.length) s += special[rnd(special.length)] + WORDS[rnd(WORDS.length)];
        out.push(s);
    }
    return out;
}

function readGz(p) { return JSON.parse(zlib.gunzipSync(fs.readFileSync(p)).toString('utf8')); }

function record(name) {
    const dir = path.join('tests/fixtures/tokenizers', name);
    const tokenizerJSON = readGz(path.join(dir, 'tokenizer.json.gz'));
    const tokenizerConfig = readGz(path.join(dir, 'tokenizer_config.json.gz'));
    const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
    // the added tokens, special or not, plus a few of the special ones again inside words
    const special = tokenizerJSON.added_tokens.map((t) => t.content).slice(0, 12);
    const lines = [];
    let i = 0;
    for (const text of cases(special)) {
        const ids = tok.encode(text, { add_special_tokens: false });
        const decoded = ids.length ? tok.decode(ids, { clean_up_tokenization_spaces: false }) : '';
        const c = { text, ids, decoded };
        if (i++ % 10 === 0) c.ids_bos = tok.encode(text, { add_special_tokens: true });
        lines.push(JSON.stringify(c));
    }
    fs.writeFileSync(path.join(dir, 'ref.jsonl'), lines.join('\n') + '\n');
    console.log(`${name}: ${lines.length} cases`);
}

const names = process.argv.slice(2);
if (!names.length) { console.error('usage: node tests/ref/tokenizer_json_ref.js NAME...'); process.exit(2); }
names.forEach(record);
