#!/usr/bin/env node
// Writes tests/fixtures/tokenizer_cases.json: GPT-2 token ids for a list of strings, produced by
// an independent implementation, the npm package gpt-3-encoder (a port of OpenAI's encoder.py),
// and cross-checked against a second one, gpt-tokenizer (its r50k_base encoding, i.e. GPT-2).
// tests/test_tokenizer.c checks common/tokenizer.c against every case, byte for byte.
//
//   node tests/ref/tokenizer_ref.js            (from the repo root)
//
// The packages are installed with npm into an ignored folder (TOKREF_DIR, default /tmp/tokref)
// when absent. Exits non-zero when the two references disagree on a case.
//
// What the fixture records per case: name, text (a JSON string, for people), hex (its exact UTF-8
// bytes, for the C test), ids (plain encoding: "<|endoftext|>" in text is ordinary text, which is
// what gpt-3-encoder and GPT-2's encoder.py do: "<|", "endoftext", "|>" -> 27 91 437 1659 5239 91 29)
// and ids_special (the encoding when special tokens are recognised: the text is cut at each
// "<|endoftext|>", the parts encoded by gpt-3-encoder, and 50256 put between them).
//
// Whitespace: JavaScript's \s differs from GPT-2's Python `regex` (and from PCRE2) on U+0085,
// U+180E and U+FEFF, so no case uses those characters; test_tokenizer.c checks them separately.
'use strict';
const fs = require('fs');
const path = require('path');
const { execSync } = require('child_process');

const refDir = process.env.TOKREF_DIR || '/tmp/tokref';
function need(pkg) {
    try { return require(require.resolve(pkg, { paths: [refDir] })); } catch (e) { /* install below */ }
    fs.mkdirSync(refDir, { recursive: true });
    if (!fs.existsSync(path.join(refDir, 'package.json'))) fs.writeFileSync(path.join(refDir, 'package.json'), '{}\n');
    execSync(`npm install --no-audit --no-fund --prefix ${JSON.stringify(refDir)} gpt-3-encoder gpt-tokenizer`,
             { stdio: 'inherit' });
    return require(require.resolve(pkg, { paths: [refDir] }));
}
const g3 = need('gpt-3-encoder');
const gt = need('gpt-tokenizer/encoding/r50k_base');
const version = (p) => JSON.parse(fs.readFileSync(require.resolve(p + '/package.json', { paths: [refDir] }))).version;

const EOT = '<|endoftext|>';
const cases = [
    ['empty', ''],
    ['one_space', ' '],
    ['hello', 'Hello world'],
    ['sentence', 'The quick brown fox jumps over the lazy dog.'],
    ['contractions', "I'm sure you're right, it's what we've said: I'll go, he'd stay, don't."],
    ['contractions_upper', "IT'S I'M YOU'RE WE'VE THEY'LL HE'D DON'T"],
    ['contraction_alone', "'s't're've'm'll'd"],
    ['apostrophes', "rock 'n' roll, the '90s, 'quoted', O'Brien's"],
    ['digits', '0 1 12 123 1234 12345 123456789 3.14159 1,000,000 -42 +7 1e10 0x1F'],
    ['digits_letters', 'abc123def 4th 2nd v1.2.3 iPhone15 COVID-19'],
    ['long_number', '31415926535897932384626433832795028841971693993751058209749445923078164062862'],
    ['punct_run', '!!!??? ... --- *** ### $$$ %%% ^^^ &&& ((())) [[[]]] {{{}}} <<<>>> ~~~ ```'],
    ['punct_mixed', 'Wait...what?!? (Really.) "Yes," she said; "no"—maybe: [ok] {x} <y> #1 @me ~/a/b'],
    ['two_spaces', 'two  spaces'],
    ['many_spaces', 'a          b                              c'],
    ['leading_spaces', '     leading spaces'],
    ['trailing_spaces', 'trailing spaces     '],
    ['only_spaces', '        '],
    ['newlines', 'line one\nline two\n\nline four\n\n\n\nline eight\n'],
    ['crlf', 'windows\r\nline\r\n\r\nend\r\n'],
    ['tabs', 'col1\tcol2\t\tcol4\n\tindented\n\t\t\tdeep'],
    ['mixed_ws', ' \t \n \r\n\t  x \n\n  \t y  \t\n'],
    ['space_newline_space', 'a \n b \n\n c'],
    ['trailing_newlines', 'end\n\n\n'],
    ['accents_fr', "Le cœur déçu mais l'âme plutôt naïve, Louÿs rêva de crapaüter en canoë au delà des îles."],
    ['accents_de', 'Falsches Üben von Xylophonmusik quält jeden größeren Zwerg. Straße, Mädchen.'],
    ['accents_es', '¿Dónde está el niño? ¡Qué pingüino tan pequeño! Año, señor.'],
    ['combining', 'e\u0301 a\u0300 n\u0303o caf\u00e9 cafe\u0301'],
    ['cjk_zh', '我能吞下玻璃而不伤身体。中文分词测试，包括标点符号！'],
    ['cjk_ja', '私はガラスを食べられます。それは私を傷つけません。カタカナとひらがな'],
    ['cjk_ko', '나는 유리를 먹을 수 있어요. 그래도 아프지 않아요'],
    ['cyrillic', 'Съешь же ещё этих мягких французских булок, да выпей чаю.'],
    ['greek', 'Ξεσκεπάζω τὴν ψυχοφθόρα βδελυγμία. αβγδε ΑΒΓΔΕ'],
    ['arabic', 'أنا قادر على أكل الزجاج و هذا لا يؤلمني. ١٢٣٤٥'],
    ['hebrew', 'אני יכול לאכול זכוכית וזה לא מזיק לי'],
    ['devanagari', 'मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती. १२३'],
    ['thai', 'ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ'],
    ['emoji', 'I love 🍕 and 🎉🎉🎉! 👍🏽 ❤️ ☀️'],
    ['emoji_zwj', 'family: 👨‍👩‍👧‍👦 flag: 🇫🇷🇯🇵 rainbow: 🏳️‍🌈'],
    ['emoji_only', '😀😃😄😁😆😅😂🤣'],
    ['mixed_scripts', 'English, русский, 中文, العربية, हिन्दी, 日本語, 한국어 and ελληνικά in one line.'],
    ['mixed_words', 'naïveté Москва東京Paris123北京'],
    ['unicode_spaces', 'a\u00a0b\u2003c\u3000d\u2009e\u202ff\u205fg'],
    ['unicode_space_runs', 'x \u00a0 \u00a0y\u3000\u3000 z'],
    ['line_separators', 'one\u2028two\u2029three'],
    ['math_symbols', '∀x∈ℝ: x² ≥ 0, ∑ᵢ aᵢ ≈ ∫ f(x) dx ≠ ∞ ± √2 ½ ¾ ⁴²'],
    ['long_word', 'pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism'],
    ['long_repeat', 'abc'.repeat(200)],
    ['long_letter_run', 'a'.repeat(500)],
    ['long_digits', '7'.repeat(300)],
    ['long_spaces', ' '.repeat(300) + 'x' + ' '.repeat(300)],
    ['long_newlines', '\n'.repeat(100) + 'y'],
    ['code_c', 'int main(void) {\n    printf("%d\\n", a[i] += 0x7f);\n    return 0; // done\n}\n'],
    ['code_python', 'def f(x):\n    """Docstring."""\n    return [i**2 for i in range(x) if i % 2 == 0]\n'],
    ['url_email', 'See https://example.com/path?q=1&r=two#frag or mail someone@example.org.'],
    ['json', '{"name": "GPT-2", "vocab": 50257, "list": [1, 2.5, null, true], "nested": {"a": "b"}}'],
    ['markdown', '# Title\n\n* item **bold** _em_ `code`\n> quote\n\n| a | b |\n|---|---|\n'],
    ['html', '<div class="x">Hello &amp; <b>bye</b></div>'],
    ['eot_alone', EOT],
    ['eot_in_text', 'First document.' + EOT + 'Second document.'],
    ['eot_spaced', 'end ' + EOT + ' start\n' + EOT + '\n'],
    ['eot_twice', EOT + EOT],
    ['eot_partial', '<|endoftext| <|endof <endoftext|> <|ENDOFTEXT|> |>'],
    ['control_chars', 'a\u0000b\u0001c\u0007d\u001be\u007ff'],
    ['latin1_symbols', '© ® ™ § ¶ † ‡ • … ‰ € £ ¥ ¢ ¤ µ ° ¿ ¡ « » „ “ ” ‘ ’'],
    ['fullwidth', 'ＡＢＣ１２３！？　ｱｲｳ'],
    ['rare_planes', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝟘𝟙𝟚 𓀀𓀁 𠀀𠀁'],
    ['apostrophe_unicode', 'don’t it’s we’re'],
    ['dialogue', '"Hello," he said. "How\'re you?"\n\n"Fine," she replied, "and you?"'],
    ['paragraph', 'In 1977, the committee met 12 times; in 1978, 15 times. Its members—Dr. Smith, Prof. J. Doe, ' +
        'and Ms. O\'Neil—argued about the "new" rules (see §4.2, pp. 113–117). Nobody agreed.\n'],
];

// Deterministic pseudo-random strings over a mixed alphabet (letters, digits, spaces, newlines,
// punctuation, accents, CJK, emoji, no-break spaces).
const alphabet = ['a', 'b', 'e', 't', 'Z', 'Q', '0', '7', ' ', ' ', ' ', '\n', '\t', '\r', "'", 's', 'l', 'l',
    '.', ',', '!', '-', '"', '<', '|', '>', 'é', 'ß', 'Ж', '中', '文', '😀', '\u00a0', '\u3000', '١', '½', '\u0301'];
let seed = 12345;
function rnd() { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; }
for (let k = 0; k < 40; k++) {
    let s = '';
    const n = 1 + Math.floor(rnd() * 60);
    for (let i = 0; i < n; i++) {
        if (rnd() < 0.05) s += EOT;
        else if (rnd() < 0.1) s += "'" + ['s', 't', 're', 've', 'm', 'll', 'd'][Math.floor(rnd() * 7)];
        else s += alphabet[Math.floor(rnd() * alphabet.length)];
    }
    cases.push([`random_${k}`, s]);
}

function hex(s) { return Buffer.from(s, 'utf8').toString('hex'); }
let bad = 0;
const out = [];
for (const [name, text] of cases) {
    const ids = g3.encode(text);
    const other = gt.encode(text, { disallowedSpecial: new Set() });
    if (JSON.stringify(ids) !== JSON.stringify(other)) {
        console.error(`disagree on ${name}: gpt-3-encoder ${JSON.stringify(ids)} gpt-tokenizer ${JSON.stringify(other)}`);
        bad++;
    }
    if (g3.decode(ids) !== text) { console.error(`gpt-3-encoder does not round-trip ${name}`); bad++; }
    const parts = text.split(EOT);
    const ids_special = [];
    parts.forEach((p, i) => { if (i) ids_special.push(50256); ids_special.push(...g3.encode(p)); });
    out.push({ name, text, hex: hex(text), ids, ids_special });
}
const doc = {
    source: `gpt-3-encoder ${version('gpt-3-encoder')}, cross-checked with gpt-tokenizer ${version('gpt-tokenizer')} ` +
            '(r50k_base); written by tests/ref/tokenizer_ref.js',
    cases: out,
};
const dest = path.join(__dirname, '..', 'fixtures', 'tokenizer_cases.json');
fs.writeFileSync(dest, JSON.stringify(doc, null, 0).replace(/\},\{/g, '},\n{') + '\n');
console.log(`wrote ${out.length} cases to ${dest}${bad ? `; ${bad} disagreements` : ''}`);
process.exit(bad ? 1 : 0);
