#!/usr/bin/env node
// The JavaScript side of bench/tokenizer.sh: GPT-2 encode speed of well-known npm tokenizers on
// the same corpus as bench_tokenizer, one thread, best of N runs, MB/s = 10^6 input bytes / s.
//
//   node bench/tokenizer_ref.js CORPUS [RUNS]      (NODE_PATH or TOKREF_DIR: where the packages are)
//   node bench/tokenizer_ref.js CORPUS RUNS llama3 DIR   (Llama 3's tokenizer.json: see benchLlama3)
//
// Prints one JSON line per (package, figure): {"name", "figure", "mb_s", "tokens", "checksum"},
// and for bench/tokenizer.sh a line "REF NAME[:FIGURE]=MBS" per figure and "CHECK NAME tokens=N
// checksum=H" per package,
// with figure encode_per_line (each line with its '\n' encoded by its own call, as bench_tokenizer
// does; tokens and checksum, FNV-1a over the ids, must match ours), encode_whole (one call; only
// for gpt-tokenizer: gpt-3-encoder concatenates arrays per piece, quadratic on a 4 MB string) and
// decode.
'use strict';
const fs = require('fs');
const path = require('path');

const corpus = process.argv[2];
const runs = parseInt(process.argv[3] || '3', 10);
if (!corpus) { console.error('usage: node bench/tokenizer_ref.js CORPUS [RUNS]'); process.exit(2); }
const refDir = process.env.TOKREF_DIR || '/tmp/tokref';
const load = (p) => require(require.resolve(p, { paths: [refDir, ...(process.env.NODE_PATH || '').split(':')] }));

const text = fs.readFileSync(corpus, 'utf8');
const mb = Buffer.byteLength(text, 'utf8') / 1e6;
const lines = text.match(/[^\n]*\n|[^\n]+$/g) || [];

function checksum(ids) {
    let h = 2166136261;
    for (const id of ids) h = Math.imul(h ^ id, 16777619) >>> 0;
    return h;
}

function bench(name, encode, decode, whole, check = true) {
    let best = Infinity, all = [];
    for (let r = 0; r < runs; r++) {
        const t0 = process.hrtime.bigint();
        const ids = [];
        for (const l of lines) { const x = encode(l); for (let i = 0; i < x.length; i++) ids.push(x[i]); }
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        if (dt < best) best = dt;
        all = ids;
    }
    console.log(JSON.stringify({ name, figure: 'encode_per_line', mb_s: mb / best, tokens: all.length, checksum: checksum(all) }));
    console.log(`REF ${name}=${(mb / best).toFixed(3)}`);
    if (check) console.log(`CHECK ${name} tokens=${all.length} checksum=${checksum(all)}`);
    if (whole) {
        let bw = Infinity, n = 0;
        for (let r = 0; r < runs; r++) {
            const t0 = process.hrtime.bigint();
            n = encode(text).length;
            const dt = Number(process.hrtime.bigint() - t0) / 1e9;
            if (dt < bw) bw = dt;
        }
        console.log(JSON.stringify({ name, figure: 'encode_whole', mb_s: mb / bw, tokens: n }));
        console.log(`REF ${name}:encode_whole=${(mb / bw).toFixed(3)}`);
    }
    if (decode) {
        let bd = Infinity;
        for (let r = 0; r < runs; r++) {
            const t0 = process.hrtime.bigint();
            const s = decode(all);
            const dt = Number(process.hrtime.bigint() - t0) / 1e9;
            if (dt < bd) bd = dt;
            if (s !== text) { console.error(`${name}: decode(encode(corpus)) != corpus`); process.exit(1); }
        }
        console.log(JSON.stringify({ name, figure: 'decode', mb_s: mb / bd }));
        console.log(`REF ${name}:decode=${(mb / bd).toFixed(3)}`);
    }
}

// node bench/tokenizer_ref.js CORPUS RUNS llama3 DIR: the Llama 3 tokenizer.json in DIR with the
// JavaScript HF tokenizers (@lenml/tokenizers; its ids must equal ours), and tiktoken (npm, the
// Rust core compiled to WASM) with cl100k_base: the encoding whose pre-tokenizer regex Llama 3's
// is (digits in threes, the same letter and punctuation classes) and whose 100k merges Llama 3's
// first 100k tokens are (on English text the ids often coincide: the bench corpus gives the
// same checksum); it is timed, not compared.
function benchLlama3(dir) {
    const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    let tk = null, lenml = null;
    try { tk = load('tiktoken'); } catch (e) { console.error('tiktoken not installed'); }
    try { lenml = load('@lenml/tokenizers'); } catch (e) { console.error('@lenml/tokenizers not installed'); }
    if (tk) {
        const enc = tk.get_encoding('cl100k_base');
        const td = new TextDecoder();
        bench(`tiktoken@${version('tiktoken')}/cl100k_base`, (s) => enc.encode(s),
              (ids) => td.decode(enc.decode(Uint32Array.from(ids))), true, false);
        enc.free();
    }
    if (lenml) {
        const tok = lenml.TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
        bench(`@lenml/tokenizers@${version('@lenml/tokenizers')}/llama3`,
              (s) => tok.encode(s, { add_special_tokens: false }),
              (ids) => tok.decode(ids, { clean_up_tokenization_spaces: false }), true);
    }
}

const llama3 = process.argv[4] === 'llama3';
let g3 = null, gt = null;
if (!llama3) try { g3 = load('gpt-3-encoder'); } catch (e) { console.error('gpt-3-encoder not installed'); }
if (!llama3) try { gt = load('gpt-tokenizer/encoding/r50k_base'); } catch (e) { console.error('gpt-tokenizer not installed'); }
const version = (p) => {   // packages with an "exports" map hide package.json from require.resolve
    for (const f of [() => require.resolve(p + '/package.json', { paths: [refDir] }),
                     () => path.join(refDir, 'node_modules', p, 'package.json')])
        try { return JSON.parse(fs.readFileSync(f())).version; } catch (e) { /* next */ }
    return '?';
};
if (llama3) benchLlama3(process.argv[5]);
if (g3) bench(`gpt-3-encoder@${version('gpt-3-encoder')}`, g3.encode, g3.decode, false);
if (gt) {
    const opt = { disallowedSpecial: new Set() };
    bench(`gpt-tokenizer@${version('gpt-tokenizer')}`, (s) => gt.encode(s, opt), gt.decode, true);
}
