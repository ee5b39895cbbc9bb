/**
 * Gemma 3 270M's GGUF-embedded tokenizer (tokenizer.ggml.model "llama" in a gemma3 file: 262,144
 * SentencePiece pieces, byte fallback, no prefix space, BOS added) against
 * test/fixtures/tokenize/gemma3_ids.json, written by test/fixtures/scripts/gemma3_tokenizer_reference.py
 * from transformers' AutoTokenizer on the same GGUF: ids, tokens and decoding of varied strings,
 * and sha256 digests of the whole vocabulary, merge ranking and added tokens. Needs the GGUF that
 * infra/fetch-models.sh installs (Gemma Terms of Use): without it the tests fail (CI runs the
 * install step first).
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { sha256File } from '../../src/store/hash.ts';
import { tokenizerJsonFromGguf } from '../../src/tokenize/gguf-vocab.ts';
import { TextTokenizer } from '../../src/tokenize/tokenizer.ts';
import { GgufReader } from '../../src/weights/gguf.ts';

const HOME = resolve(process.env.LAYERFLOW_HOME ?? new URL('../../.layerflow', import.meta.url).pathname);
const GGUF = resolve(HOME, 'models/gemma3-270m/gemma-3-270m-q4_k_m.gguf');
const FIXTURE = new URL('../fixtures/tokenize/gemma3_ids.json', import.meta.url).pathname;

interface Fixture {
  gguf_sha256: string;
  structure: { vocab_size: number; merges: number; added_tokens: number; vocab_sha256: string; merges_sha256: string; added_tokens_sha256: string };
  special: { bos: number; eos: number; pad: number; unk: number };
  cases: { text: string; ids: number[]; tokens: string[]; decoded: string }[];
}

// One build for the file (the 262k-piece vocabulary with 515k merges takes seconds).
let built: Promise<{ json: Record<string, any>; tok: TextTokenizer }> | undefined;
function gemma3() {
  built ??= (async () => {
    if (!existsSync(GGUF)) throw new Error(`Gemma 3 GGUF missing at ${GGUF}: run \`bash infra/fetch-models.sh\` (part of infra/install.sh) before the tests`);
    const r = await GgufReader.open(GGUF);
    try {
      const { json, special } = tokenizerJsonFromGguf(r.metadata, GGUF);
      return { json, tok: new TextTokenizer(json, {}, GGUF, special) };
    } finally { await r.close(); }
  })();
  return built;
}

/** Python's json.dumps(value, ensure_ascii=True, separators=(",", ":")), hashed. */
function pyDigest(value: unknown): string {
  const ascii = JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return createHash('sha256').update(ascii, 'ascii').digest('hex');
}

test('pyDigest serialises as Python json.dumps(ensure_ascii=True) does', (t) => {
  // json.dumps(..., ensure_ascii=True) escapes everything outside ' '..'~' (DEL too) as \uXXXX (UTF-16 units)
  // json.dumps([["\n\x7f▁é🚀\"\\", 1]], ensure_ascii=True, separators=(",", ":")).encode() hashed:
  t.is(pyDigest([['\n\x7f▁é🚀"\\', 1]]), createHash('sha256').update('[["\\n\\u007f\\u2581\\u00e9\\ud83d\\ude80\\"\\\\",1]]').digest('hex'));
});

test('Gemma 3 GGUF tokenizer: vocabulary, merge ranks and added tokens equal transformers\' (sha256 of each)', async (t) => {
  const fx = JSON.parse(await readFile(FIXTURE, 'utf8')) as Fixture;
  const { json } = await gemma3();
  t.is(await sha256File(GGUF), fx.gguf_sha256, 'the fixture was written from this exact GGUF');
  const vocab = Object.entries(json.model.vocab as Record<string, number>).sort((a, b) => a[1] - b[1]);
  const merges = json.model.merges as [string, string][];
  const added = (json.added_tokens as { id: number; content: string; special: boolean; normalized: boolean }[])
    .map((a) => [a.id, a.content, a.special, a.normalized]).sort((a, b) => (a[0] as number) - (b[0] as number));
  t.deepEqual([vocab.length, merges.length, added.length], [fx.structure.vocab_size, fx.structure.merges, fx.structure.added_tokens]);
  t.is(pyDigest(vocab), fx.structure.vocab_sha256, 'vocabulary (whitespace pieces respelled with ▁)');
  t.is(pyDigest(merges), fx.structure.merges_sha256, 'merges, ranked by piece position in the file');
  t.is(pyDigest(added), fx.structure.added_tokens_sha256, 'added tokens: control as special, user-defined as plain');
  // The respelling: llama.cpp writes Gemma's whitespace pieces with real spaces.
  t.is(json.model.vocab['▁▁'], 138);
  t.false('  ' in json.model.vocab);
});

test('Gemma 3 GGUF tokenizer: ids, tokens and decoding equal transformers\' on every fixture string', async (t) => {
  const fx = JSON.parse(await readFile(FIXTURE, 'utf8')) as Fixture;
  const { tok } = await gemma3();
  t.true(fx.cases.length >= 20);
  for (const c of fx.cases) {
    const what = JSON.stringify(c.text);
    t.deepEqual(tok.encode(c.text), c.ids, what);
    t.deepEqual(tok.tokens(c.text), c.tokens, what);
    t.is(tok.decode(c.ids), c.decoded, what);
  }
});

test('Gemma 3 GGUF tokenizer: special ids, BOS, no prefix space, size', async (t) => {
  const fx = JSON.parse(await readFile(FIXTURE, 'utf8')) as Fixture;
  const { tok } = await gemma3();
  t.deepEqual([tok.bosId, tok.eosId, tok.padId], [fx.special.bos, fx.special.eos, fx.special.pad]);
  t.is(tok.vocabSize, 262144);
  t.deepEqual(tok.tokens('Hello world', { addSpecialTokens: false }), ['Hello', '▁world']);
  t.deepEqual(tok.encode('<start_of_turn>user'), [2, 105, 2364]);
});
