/**
 * A small byte-level BPE trainer (GPT-2 scheme) writing a Hugging Face tokenizer.json, so the
 * tokenizer loads with src/tokenize (and with Python `tokenizers` / transformers).
 *
 * Pre-tokenization is GPT-2's: the ByteLevel regex split, each piece's UTF-8 bytes mapped to
 * printable characters (bytes_to_unicode, so a space becomes "Ġ"). The vocabulary is the 256 byte
 * symbols (ids 0–255 in byte order), then one token per learned merge (ids 256…, in merge order),
 * then the special tokens. Training repeatedly merges the most frequent adjacent pair over the
 * distinct pieces weighted by their counts; ties go to the pair whose (left, right) strings sort
 * first, so the result is deterministic.
 */
import { ConfigError, DataError } from '../errors.ts';

/** GPT-2's pre-tokenizer pattern (what HF's ByteLevel pre-tokenizer uses with use_regex). */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2 bytes_to_unicode: byte → printable character. */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  }
  const out = new Array<string>(256);
  bs.forEach((b, i) => { out[b] = String.fromCodePoint(cs[i]); });
  return out;
}

export interface BpeTrainOptions {
  texts: Iterable<string>;
  /** Number of merges to learn. */
  merges: number;
  /** Special tokens appended after the merges (e.g. ["<|endoftext|>"]). */
  specialTokens?: string[];
  /** Pairs seen fewer times than this are never merged (default 2). */
  minFrequency?: number;
}

export interface BpeModel {
  /** Token string → id. */
  vocab: Map<string, number>;
  /** Merges in rank order, as [left, right]. */
  merges: [string, string][];
  specialTokens: string[];
}

export function trainByteLevelBpe(o: BpeTrainOptions): BpeModel {
  if (!Number.isInteger(o.merges) || o.merges < 0) throw new ConfigError(`bpe: merges is ${o.merges}; expected an integer >= 0`);
  const minFreq = o.minFrequency ?? 2;
  const b2u = bytesToUnicode();
  const enc = new TextEncoder();
  const counts = new Map<string, number>();
  for (const text of o.texts) {
    for (const m of text.matchAll(GPT2_SPLIT)) {
      const piece = Array.from(enc.encode(m[0]), (b) => b2u[b]).join('');
      counts.set(piece, (counts.get(piece) ?? 0) + 1);
    }
  }
  if (counts.size === 0) throw new DataError('bpe: no text to train on');
  // Distinct pieces as symbol sequences (every symbol is one byte character at first).
  const words = [...counts].map(([w, c]) => ({ syms: [...w], count: c }));
  const vocab = new Map<string, number>(b2u.map((u, i) => [u, i]));
  const merges: [string, string][] = [];
  const SEP = '\u0000';
  for (let k = 0; k < o.merges; k++) {
    const pairs = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.syms.length; i++) {
        const key = w.syms[i] + SEP + w.syms[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + w.count);
      }
    }
    let bestKey = '', bestCount = 0;
    for (const [key, c] of pairs) {
      if (c > bestCount || (c === bestCount && key < bestKey)) { bestKey = key; bestCount = c; }
    }
    if (bestCount < minFreq) break;
    const [a, b] = bestKey.split(SEP) as [string, string];
    const ab = a + b;
    merges.push([a, b]);
    if (!vocab.has(ab)) vocab.set(ab, vocab.size);
    for (const w of words) {
      const s = w.syms;
      if (s.length < 2) continue;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { out.push(ab); i++; } else out.push(s[i]);
      }
      w.syms = out;
    }
  }
  const specialTokens = o.specialTokens ?? [];
  for (const t of specialTokens) {
    if (vocab.has(t)) throw new ConfigError(`bpe: special token ${JSON.stringify(t)} collides with a learned token`);
    vocab.set(t, vocab.size);
  }
  return { vocab, merges, specialTokens };
}

/** The Hugging Face tokenizer.json object for a trained byte-level BPE (GPT-2 layout, no BOS added). */
export function byteLevelTokenizerJson(m: BpeModel): Record<string, unknown> {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: m.specialTokens.map((t) => ({ id: m.vocab.get(t)!, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab: Object.fromEntries([...m.vocab].filter(([t]) => !m.specialTokens.includes(t))),
      merges: m.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}
