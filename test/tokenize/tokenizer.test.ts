import test from 'ava';
import { readFile } from 'node:fs/promises';
import { ConfigError, DataError, MissingArtifactError } from '../../src/errors.ts';
import { tokenizerFromGguf, tokenizerJsonFromGguf } from '../../src/tokenize/gguf-vocab.ts';
import { loadHfTokenizer } from '../../src/tokenize/tokenizer.ts';
import { GgufReader, type GgufValue } from '../../src/weights/gguf.ts';

const fx = (p: string) => new URL(`../fixtures/tokenize/${p}`, import.meta.url).pathname;
const GGUF = new URL('../fixtures/weights/tiny-llama.gguf', import.meta.url).pathname;

// ---- hand-derived ids (see the vocab/merges in test/fixtures/tokenize/*/tokenizer.json) ----------

test('byte-level BPE (GPT-2 style): hand-derived ids, decode, special ids from tokenizer_config.json', async (t) => {
  const tok = await loadHfTokenizer(fx('bytelevel-bpe'));
  // "hello" : h e l l o -> (h e) -> (l l) -> (he ll) -> (hell o) = hello(13)
  // " world": Ġ w o r l d -> (Ġ w) -> (o r) -> (Ġw or) -> (l d) -> (Ġwor ld) = Ġworld(18); "!" = 1
  t.deepEqual(tok.encode('hello world!'), [13, 18, 1]);
  t.deepEqual(tok.tokens('hello world!'), ['hello', 'Ġworld', '!']);
  // " hello": no merge starts with "Ġ h", so Ġ(9) stays alone
  t.deepEqual(tok.encode('hello hello'), [13, 9, 13]);
  t.is(tok.decode([13, 18, 1]), 'hello world!');
  t.deepEqual([tok.bosId, tok.eosId, tok.padId], [0, 0, null]);
  t.deepEqual(tok.encode('hello<|endoftext|>'), [13, 0]);
  t.is(tok.decode([]), '');
});

test('SentencePiece-style BPE (Llama style): Prepend ▁, byte fallback, BOS template', async (t) => {
  const tok = await loadHfTokenizer(fx('spm-llama/tokenizer.json'));
  // "hi ho" -> "▁hi▁ho": (▁ h) twice -> (▁h i) -> [▁hi, ▁h, o]; BOS <s>=1 prepended
  t.deepEqual(tok.encode('hi ho'), [1, 10, 9, 11]);
  t.deepEqual(tok.encode('hi ho', { addSpecialTokens: false }), [10, 9, 11]);
  // "é" is not in the vocab: UTF-8 bytes C3 A9 -> <0xC3>(4) <0xA9>(5); "\n" -> <0x0A>(3)
  t.deepEqual(tok.encode('hé\n'), [1, 9, 4, 5, 3]);
  t.is(tok.decode([1, 9, 4, 5, 3], { skipSpecialTokens: true }), 'hé\n');
  t.is(tok.decode([1, 10, 9, 11]), '<s> hi ho'); // as Rust tokenizers: Strip only trims the fused string's first char
  t.deepEqual([tok.bosId, tok.eosId, tok.padId], [1, 2, null]);
  t.throws(() => tok.decode([99]), { instanceOf: DataError, message: /token id 99 at position 0 is outside the vocabulary \[0, 13\)/ });
});

// ---- agreement with the Rust tokenizers library (expected.json from weights_tokenize.py) ----------

test('ids, tokens and decoding agree with Python tokenizers on every fixture string', async (t) => {
  const expected = JSON.parse(await readFile(fx('expected.json'), 'utf8'));
  for (const name of ['bytelevel-bpe', 'spm-llama']) {
    const tok = await loadHfTokenizer(fx(name));
    for (const row of expected[name]) {
      t.deepEqual(tok.encode(row.text), row.ids, `${name}: ${JSON.stringify(row.text)}`);
      t.deepEqual(tok.tokens(row.text), row.tokens, `${name}: ${JSON.stringify(row.text)}`);
      t.deepEqual(tok.encode(row.text, { addSpecialTokens: false }), row.ids_no_special, `${name}: ${JSON.stringify(row.text)}`);
      t.is(tok.decode(row.ids, { skipSpecialTokens: true }), row.decoded, `${name}: ${JSON.stringify(row.text)}`);
    }
  }
});

// ---- tokenizers from GGUF-embedded vocabularies ----------------------------------------------------

test('GGUF llama/SPM vocab (fixture written by gguf-py): merges derived from scores', async (t) => {
  const r = await GgufReader.open(GGUF);
  const { json } = tokenizerJsonFromGguf(r.metadata, GGUF);
  // scores: ▁h -4 > ▁hi -5 > ▁o -7, each piece split into in-vocab halves
  t.deepEqual((json.model as { merges: unknown }).merges, [['▁', 'h'], ['▁h', 'i'], ['▁', 'o']]);
  const tok = tokenizerFromGguf(r.metadata, GGUF);
  await r.close();
  // "hi oh!" -> "▁hi▁oh!": (▁ h) -> (▁h i) -> (▁ o) -> [▁hi, ▁o, h, <0x21>] with BOS (add_bos_token true)
  t.deepEqual(tok.encode('hi oh!'), [1, 9, 11, 6, 4]);
  t.deepEqual(tok.encode('hi\n', { addSpecialTokens: false }), [9, 3]);
  t.is(tok.decode([1, 9, 11, 6, 4], { skipSpecialTokens: true }), 'hi oh!');
  t.deepEqual([tok.bosId, tok.eosId, tok.padId], [1, 2, null]);
});

test('GGUF llama vocab in a Gemma file: whitespace pieces respelled with ▁, merges ranked by position (not score)', (t) => {
  // Expected values checked with transformers 5.24's gemma_tokenizer + add_gguf_special_tokens on this vocab.
  // Scores rank "ab" (-1) above "▁▁" (-5), but Gemma's merge order is the order in the file:
  // id 7 "  " (user-defined, written with real spaces) comes before id 8 "ab".
  const tokens = ['<pad>', '<eos>', '<bos>', '<unk>', '▁', 'a', 'b', '  ', 'ab', 'abab', '\n', '\n\n'];
  const types = [3, 3, 3, 3, 1, 1, 1, 4, 1, 1, 1, 4];
  const scores = [0, 0, 0, 0, -2, -3, -4, -5, -1, -6, -7, -1000];
  const meta = new Map<string, GgufValue>([
    ['general.architecture', 'gemma3'], ['tokenizer.ggml.model', 'llama'], ['tokenizer.ggml.tokens', tokens],
    ['tokenizer.ggml.token_type', types], ['tokenizer.ggml.scores', scores], ['tokenizer.ggml.bos_token_id', 2],
    ['tokenizer.ggml.eos_token_id', 1], ['tokenizer.ggml.unknown_token_id', 3], ['tokenizer.ggml.padding_token_id', 0],
    ['tokenizer.ggml.add_bos_token', true], ['tokenizer.ggml.add_space_prefix', false],
  ]);
  const { json } = tokenizerJsonFromGguf(meta, 'g.gguf');
  const model = json.model as { vocab: Record<string, number>; merges: string[][] };
  t.is(model.vocab['▁▁'], 7);
  t.false('  ' in model.vocab);
  // by id: ▁▁ (7), ab (8), then abab's splits, longer left half first: (aba, b) is not in vocab, (ab, ab), (a, bab) neither; \n\n (11)
  t.deepEqual(model.merges, [['▁', '▁'], ['a', 'b'], ['ab', 'ab'], ['\n', '\n']]);
  const added = (json.added_tokens as { id: number; content: string; special: boolean }[]).map((a) => [a.id, a.content, a.special]);
  t.deepEqual(added, [[0, '<pad>', true], [1, '<eos>', true], [2, '<bos>', true], [3, '<unk>', true], [11, '\n\n', false]]);
  const tok = tokenizerFromGguf(meta, 'g.gguf');
  t.deepEqual(tok.tokens('abab  ab\n\n'), ['<bos>', 'abab', '▁▁', 'ab', '\n\n']);
  t.deepEqual(tok.encode('ab ab', { addSpecialTokens: false }), [8, 4, 8]);
  t.is(tok.decode([2, 9, 7, 8]), '<bos>abab  ab');
  // The same vocabulary outside a Gemma file keeps the score ranking and the literal spelling.
  const llama = tokenizerJsonFromGguf(new Map([...meta, ['general.architecture', 'llama']]), 'l.gguf').json.model as { vocab: Record<string, number>; merges: string[][] };
  t.is(llama.vocab['  '], 7);
  t.deepEqual(llama.merges[0], ['a', 'b']);
});

function gpt2Meta(extra: [string, GgufValue][] = []): Map<string, GgufValue> {
  const vocab = ['<|endoftext|>', '!', 'd', 'e', 'h', 'l', 'o', 'r', 'w', 'Ġ', 'he', 'll', 'hell', 'hello', 'Ġw', 'or', 'Ġwor', 'ld', 'Ġworld', 'Ã', '©'];
  return new Map<string, GgufValue>([
    ['tokenizer.ggml.model', 'gpt2'],
    ['tokenizer.ggml.tokens', vocab],
    ['tokenizer.ggml.token_type', vocab.map((_, i) => (i === 0 ? 3 : 1))],
    ['tokenizer.ggml.merges', ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'l d', 'Ġwor ld']],
    ['tokenizer.ggml.bos_token_id', 0],
    ['tokenizer.ggml.eos_token_id', 0],
    ...extra,
  ]);
}

test('GGUF gpt2/BPE vocab gives the same ids as the equivalent tokenizer.json', async (t) => {
  const expected = JSON.parse(await readFile(fx('expected.json'), 'utf8'));
  const tok = tokenizerFromGguf(gpt2Meta());
  for (const row of expected['bytelevel-bpe']) t.deepEqual(tok.encode(row.text), row.ids, JSON.stringify(row.text));
  t.is(tok.decode([13, 18, 1]), 'hello world!');
  // llama-bpe pre-tokenizer regex: same splits for this text
  t.deepEqual(tokenizerFromGguf(gpt2Meta([['tokenizer.ggml.pre', 'llama-bpe']])).encode('hello world!'), [13, 18, 1]);
  // add_bos_token true -> BOS template
  t.deepEqual(tokenizerFromGguf(gpt2Meta([['tokenizer.ggml.add_bos_token', true]])).encode('hello'), [0, 13]);
});

test('GGUF / tokenizer.json problems are typed errors naming the source', async (t) => {
  t.throws(() => tokenizerFromGguf(gpt2Meta([['tokenizer.ggml.model', 't5']]), 'x.gguf'), { instanceOf: ConfigError, message: /x.gguf: tokenizer.ggml.model "t5" is not supported/ });
  t.throws(() => tokenizerFromGguf(gpt2Meta([['tokenizer.ggml.pre', 'falcon']]), 'x.gguf'), { instanceOf: ConfigError, message: /tokenizer.ggml.pre "falcon" is not supported/ });
  t.throws(() => tokenizerFromGguf(gpt2Meta([['tokenizer.ggml.eos_token_id', 500]]), 'x.gguf'), { instanceOf: ConfigError, message: /eos_token_id is 500; expected a token id below 21/ });
  const m = gpt2Meta(); m.delete('tokenizer.ggml.tokens');
  t.throws(() => tokenizerFromGguf(m, 'x.gguf'), { instanceOf: ConfigError, message: /tokenizer.ggml.tokens is missing/ });
  await t.throwsAsync(loadHfTokenizer(fx('nope')), { instanceOf: MissingArtifactError });
});

test('GGUF llama/SPM path reproduces the sentencepiece library on a trained BPE model (weights_spm.py)', async (t) => {
  const f = JSON.parse(await readFile(fx('spm-bpe-gguf.json'), 'utf8'));
  const meta = new Map<string, GgufValue>([
    ['tokenizer.ggml.model', 'llama'], ['tokenizer.ggml.tokens', f.tokens], ['tokenizer.ggml.scores', f.scores],
    ['tokenizer.ggml.token_type', f.token_type], ['tokenizer.ggml.bos_token_id', f.bos], ['tokenizer.ggml.eos_token_id', f.eos],
    ['tokenizer.ggml.unknown_token_id', f.unk],
  ]);
  const tok = tokenizerFromGguf(meta, 'spm-bpe-gguf.json');
  for (const c of f.cases) {
    t.deepEqual(tok.encode(c.text, { addSpecialTokens: false }), c.ids, JSON.stringify(c.text));
    t.deepEqual(tok.encode(c.text), [f.bos, ...c.ids]);
    t.is(tok.decode(c.ids), c.text);
  }
});
