/**
 * SmolLM2-135M-Instruct's GGUF-embedded tokenizer (byte-level BPE, tokenizer.ggml.pre "smollm":
 * every numeric character isolated, then the GPT-2 pattern) against reference ids written by
 * test/fixtures/scripts/tokenize_smollm2.py (transformers on the same GGUF with SmolLM2's own
 * pre-tokenizer; cross-checked with llama.cpp when available). Needs the GGUF that
 * infra/fetch-models.sh installs: without it the tests fail (CI runs the install step first).
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { defaultModelPath } from '../../src/models/load.ts';
import { sha256File } from '../../src/store/hash.ts';
import { tokenizerFromGguf } from '../../src/tokenize/gguf-vocab.ts';
import { GgufReader } from '../../src/weights/gguf.ts';

const HOME = resolve(process.env.LAYERFLOW_HOME ?? new URL('../../.layerflow', import.meta.url).pathname);
const FIXTURE = new URL('../fixtures/tokenize/smollm2_ids.json', import.meta.url).pathname;

interface Fixture { gguf_sha256: string; cases: { text: string; ids: number[]; tokens: string[]; decoded: string }[] }

async function smollm2() {
  const path = defaultModelPath(HOME, 'smollm2-135m-instruct');
  if (!existsSync(path)) throw new Error(`SmolLM2 GGUF missing at ${path}: run \`bash infra/fetch-models.sh\` (part of infra/install.sh) before the tests`);
  const r = await GgufReader.open(path);
  try { return { path, tok: tokenizerFromGguf(r.metadata, path) }; } finally { await r.close(); }
}

test('SmolLM2 GGUF tokenizer: ids, tokens and decoding equal the reference on every fixture string', async (t) => {
  const fx = JSON.parse(await readFile(FIXTURE, 'utf8')) as Fixture;
  const { path, tok } = await smollm2();
  t.is(await sha256File(path), fx.gguf_sha256, 'the fixture was written from this exact GGUF');
  t.true(fx.cases.length >= 15);
  for (const c of fx.cases) {
    const what = JSON.stringify(c.text);
    t.deepEqual(tok.encode(c.text), c.ids, what);
    t.deepEqual(tok.tokens(c.text), c.tokens, what);
    t.is(tok.decode(c.ids), c.decoded, what);
  }
});

test('SmolLM2 GGUF tokenizer: digits are isolated before the GPT-2 split; special tokens', async (t) => {
  const { tok } = await smollm2();
  // "  42": isolating "4" and "2" first leaves "  " whole, so the two spaces merge to "ĠĠ"
  // (plain GPT-2 splitting would give "Ġ", "Ġ4"→["Ġ","4"]).
  t.deepEqual(tok.tokens('x  42'), ['x', 'ĠĠ', '4', '2']);
  t.deepEqual(tok.tokens('½²'), ['Â½', 'Â²']);
  t.deepEqual([tok.bosId, tok.eosId, tok.padId], [1, 2, 2]);
  t.deepEqual(tok.encode('<|im_start|>user'), [1, 4093]);
  t.is(tok.vocabSize, 49152);
});
