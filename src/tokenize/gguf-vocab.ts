/**
 * Tokenizers from a GGUF file's embedded vocabulary (tokenizer.ggml.*), converted to the equivalent
 * Hugging Face tokenizer.json and run by the same library as ./tokenizer.ts:
 *  - model "llama" (SentencePiece BPE): vocab + scores. Merges are derived as transformers'
 *    SentencePieceExtractor does: every split of a piece into two in-vocabulary halves, ranked by
 *    the piece's score (higher first). With byte fallback (<0xXX> tokens), the "▁" space marker and
 *    a leading-space prefix this reproduces llama.cpp's score-driven bigram merging.
 *  - model "llama" in a Gemma file (general.architecture gemma, gemma2, gemma3): as transformers
 *    builds it (integrations/gguf/gguf_tokenizer_mapping.py, gemma_tokenizer; checked with 5.24 on
 *    Gemma 3 270M, test/tokenize/gemma3.test.ts). Two differences from the above: tokens of spaces
 *    only ("  ", as llama.cpp's converter writes Gemma's whitespace pieces) are respelled "▁▁", so
 *    they are reached through the normalizer and merges like every other piece (and are not added
 *    tokens); and merges are ranked by the piece's position in the file (earlier first; within a
 *    piece, longer left half first), from every piece whatever its type, because Gemma's scores do
 *    not follow its merge order (its user-defined pieces, e.g. "\n\n", all score -1000, between
 *    ordinary pieces). Normalizer Replace(" " → "▁"), no prefix, BPE with byte fallback.
 *  - model "gpt2" (byte-level BPE): vocab + explicit merges, pre-tokenizer chosen by
 *    tokenizer.ggml.pre as llama.cpp does (llama-vocab.cpp, regex_exprs): gpt2/default, llama-bpe,
 *    qwen2, smollm. Each is a list of regex splits (Split, behavior Isolated) applied in order, then
 *    ByteLevel, which applies the GPT-2 pattern itself when the list does not end in a full pattern.
 * Token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
 */
import { ConfigError, DataError } from '../errors.ts';
import type { GgufValue } from '../weights/gguf.ts';
import { TextTokenizer } from './tokenizer.ts';

const NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4;

const GPT2_OWN = null; // the GPT-2 pattern built into the ByteLevel pre-tokenizer
/**
 * tokenizer.ggml.pre → regex splits applied in order (each piece is split again by the next), then
 * the last entry: a full pattern, or GPT2_OWN for ByteLevel's own GPT-2 pattern.
 */
const PRE_SPLITS: Record<string, (string | typeof GPT2_OWN)[]> = {
  default: [GPT2_OWN],
  gpt2: [GPT2_OWN],
  'llama-bpe': ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
  qwen2: ["(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
  // SmolLM / SmolLM2 (HF: Digits(individual_digits) + ByteLevel): every numeric character its own
  // piece, then GPT-2. \p{N} rather than Digits, whose JS port only knows ASCII \d.
  smollm: ['\\p{N}', GPT2_OWN],
};

type Meta = Map<string, GgufValue>;

function get<T>(m: Meta, key: string, check: (v: unknown) => boolean, want: string, source: string, dflt?: T): T {
  const v = m.get(key);
  if (v === undefined && dflt !== undefined) return dflt;
  if (!check(v)) throw new ConfigError(`${source}: metadata ${key} is ${v === undefined ? 'missing' : JSON.stringify(v).slice(0, 80)}; expected ${want}`);
  return v as T;
}
const isInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isArr = (pred: (x: unknown) => boolean) => (v: unknown) => Array.isArray(v) && v.every(pred);

/** The tokenizer.json object equivalent to a GGUF's embedded tokenizer, plus its special ids. */
export function tokenizerJsonFromGguf(meta: Meta, source = 'gguf'): { json: Record<string, unknown>; special: { bos: number | null; eos: number | null; pad: number | null } } {
  const model = get<string>(meta, 'tokenizer.ggml.model', (v) => typeof v === 'string', 'a string', source);
  const tokens = get<string[]>(meta, 'tokenizer.ggml.tokens', isArr((x) => typeof x === 'string'), 'an array of strings', source);
  const n = tokens.length;
  const types = get<number[]>(meta, 'tokenizer.ggml.token_type', (v) => isArr(isInt)(v) && (v as unknown[]).length === n, `${n} integer token types`, source, new Array(n).fill(NORMAL));
  const optId = (key: string): number | null => {
    const v = meta.get(key);
    if (v === undefined) return null;
    if (!isInt(v) || (v as number) >= n) throw new ConfigError(`${source}: metadata ${key} is ${JSON.stringify(v)}; expected a token id below ${n}`);
    return v as number;
  };
  const special = { bos: optId('tokenizer.ggml.bos_token_id'), eos: optId('tokenizer.ggml.eos_token_id'), pad: optId('tokenizer.ggml.padding_token_id') };
  const unkId = optId('tokenizer.ggml.unknown_token_id') ?? (types.indexOf(UNKNOWN) >= 0 ? types.indexOf(UNKNOWN) : null);
  const bool = (key: string, dflt: boolean) => get<boolean>(meta, key, (v) => typeof v === 'boolean', 'true or false', source, dflt);

  const vocab: Record<string, number> = Object.create(null);
  tokens.forEach((t, i) => { if (!(t in vocab)) vocab[t] = i; });
  const added = tokens.flatMap((content, id) => {
    const ty = types[id];
    if (ty !== CONTROL && ty !== UNKNOWN && ty !== USER_DEFINED) return [];
    return [{ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: ty !== USER_DEFINED }];
  });
  const addBos = bool('tokenizer.ggml.add_bos_token', model === 'llama');
  const addEos = bool('tokenizer.ggml.add_eos_token', false);
  const tpl = (id: number | null, flag: boolean) => (flag && id !== null ? [{ SpecialToken: { id: tokens[id], type_id: 0 } }] : []);
  const single = [...tpl(special.bos, addBos), { Sequence: { id: 'A', type_id: 0 } }, ...tpl(special.eos, addEos)];
  const specials = Object.fromEntries([special.bos, special.eos].filter((x): x is number => x !== null).map((id) => [tokens[id], { id: tokens[id], ids: [id], tokens: [tokens[id]] }]));
  const post = single.length > 1 ? { type: 'TemplateProcessing', single, pair: single, special_tokens: specials } : null;

  const arch = meta.get('general.architecture');
  if (model === 'llama' && typeof arch === 'string' && GEMMA_ARCHS.has(arch)) {
    return { special, json: gemmaTokenizerJson(tokens, types, unkId, bool('tokenizer.ggml.add_space_prefix', false), post) };
  }
  if (model === 'llama') {
    const scores = get<number[]>(meta, 'tokenizer.ggml.scores', (v) => isArr((x) => typeof x === 'number')(v) && (v as unknown[]).length === n, `${n} float scores`, source);
    const prefix = bool('tokenizer.ggml.add_space_prefix', true);
    // SentencePieceExtractor: (left, right) for every in-vocab split of a normal piece, by piece score.
    const merges: { pair: [string, string]; score: number; id: number; l: number; r: number }[] = [];
    tokens.forEach((piece, id) => {
      if (types[id] !== NORMAL && types[id] !== USER_DEFINED) return;
      const chars = Array.from(piece);
      for (let k = 1; k < chars.length; k++) {
        const l = chars.slice(0, k).join(''), r = chars.slice(k).join('');
        if (l in vocab && r in vocab) merges.push({ pair: [l, r], score: scores[id], id, l: vocab[l], r: vocab[r] });
      }
    });
    merges.sort((a, b) => b.score - a.score || a.id - b.id || a.l - b.l || a.r - b.r);
    return {
      special,
      json: {
        version: '1.0', truncation: null, padding: null, added_tokens: added,
        normalizer: { type: 'Sequence', normalizers: [...(prefix ? [{ type: 'Prepend', prepend: '▁' }] : []), { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
        pre_tokenizer: null,
        post_processor: post,
        decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : [])] },
        model: { type: 'BPE', dropout: null, unk_token: unkId === null ? null : tokens[unkId], continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: merges.map((m) => m.pair) },
      },
    };
  }
  if (model === 'gpt2') {
    const merges = get<string[]>(meta, 'tokenizer.ggml.merges', isArr((x) => typeof x === 'string'), 'an array of "left right" strings', source);
    const pairs = merges.map((s, i) => {
      const sp = s.indexOf(' ', 1);
      if (sp < 0) throw new DataError(`${source}: tokenizer.ggml.merges[${i}] is ${JSON.stringify(s)}; expected "left right"`);
      return [s.slice(0, sp), s.slice(sp + 1)];
    });
    const pre = get<string>(meta, 'tokenizer.ggml.pre', (v) => typeof v === 'string', 'a string', source, 'default');
    if (!Object.hasOwn(PRE_SPLITS, pre)) throw new ConfigError(`${source}: tokenizer.ggml.pre "${pre}" is not supported; expected one of ${Object.keys(PRE_SPLITS).join(', ')}`);
    const steps = PRE_SPLITS[pre];
    const ownRegex = steps[steps.length - 1] === GPT2_OWN;
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: ownRegex };
    const splits = steps.filter((r): r is string => r !== GPT2_OWN).map((r) => ({ type: 'Split', pattern: { Regex: r }, behavior: 'Isolated', invert: false }));
    return {
      special,
      json: {
        version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
        pre_tokenizer: splits.length === 0 ? byteLevel : { type: 'Sequence', pretokenizers: [...splits, byteLevel] },
        post_processor: post,
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: pairs },
      },
    };
  }
  throw new ConfigError(`${source}: tokenizer.ggml.model "${model}" is not supported; expected "llama" (SentencePiece) or "gpt2" (byte-level BPE)`);
}

const GEMMA_ARCHS = new Set(['gemma', 'gemma2', 'gemma3']);
/** Python's str.isspace characters (what transformers' `not t.strip()` tests), not JS's \s. */
const PY_SPACE_ONLY = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$/;

/**
 * tokenizer.json for a Gemma GGUF's SentencePiece vocabulary, as transformers' gemma_tokenizer +
 * GemmaTokenizer + add_gguf_special_tokens build it:
 *  - vocab: the file's tokens, each token made of whitespace that contains a space respelled as
 *    "▁" × its length; a token spelled twice keeps its last id (a Python dict);
 *  - merges (generate_merges with scores = -position): for every vocab entry, each split into two
 *    in-vocabulary halves, ordered by the entry's id (lower first), then by the left half's length
 *    (longer first);
 *  - added tokens: control pieces (type 3) as special, user-defined pieces (type 4) still in the
 *    vocabulary under their own spelling as non-special, both matched on the raw text;
 *  - normalizer Replace(" " → "▁") (plus Prepend("▁") only if add_space_prefix says so; Gemma
 *    files say false). GemmaTokenizer also sets a Split(" ", MergedWithPrevious) pre-tokenizer,
 *    but it runs after the normalizer has replaced every " ", so it never splits; none is
 *    equivalent (and this library's Split has no MergedWithPrevious).
 */
function gemmaTokenizerJson(tokens: string[], types: number[], unkId: number | null, prefix: boolean, post: unknown): Record<string, unknown> {
  const spelled = tokens.map((t) => (t.includes(' ') && PY_SPACE_ONLY.test(t) ? '▁'.repeat(Array.from(t).length) : t));
  const vocab = new Map<string, number>();
  spelled.forEach((t, i) => vocab.set(t, i));
  const merges: { l: string; r: string; id: number; ll: number }[] = [];
  for (const [piece, id] of vocab) {
    const chars = Array.from(piece);
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join(''), r = chars.slice(k).join('');
      if (vocab.has(l) && vocab.has(r)) merges.push({ l, r, id, ll: k });
    }
  }
  merges.sort((a, b) => a.id - b.id || b.ll - a.ll);
  const added = tokens.flatMap((content, id) => {
    const ty = types[id];
    if (ty === CONTROL) return [{ id: vocab.get(content) ?? id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }];
    if (ty === USER_DEFINED && vocab.has(content)) return [{ id: vocab.get(content)!, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false }];
    return [];
  });
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: added,
    normalizer: { type: 'Sequence', normalizers: [...(prefix ? [{ type: 'Prepend', prepend: '▁' }] : []), { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: post,
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : [])] },
    model: {
      type: 'BPE', dropout: null, unk_token: unkId === null ? null : tokens[unkId], continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab: Object.fromEntries(vocab), merges: merges.map((m) => [m.l, m.r]),
    },
  };
}

/** A TextTokenizer for a GGUF's embedded vocabulary (pass `reader.metadata` and the file name). */
export function tokenizerFromGguf(meta: Meta, source = 'gguf'): TextTokenizer {
  const { json, special } = tokenizerJsonFromGguf(meta, source);
  return new TextTokenizer(json, {}, source, special);
}
