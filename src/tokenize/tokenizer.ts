/**
 * Text tokenizers from Hugging Face `tokenizer.json` (+ optional `tokenizer_config.json`), run by
 * @huggingface/tokenizers from local files only (no hub access). Byte-level BPE (GPT-2, Llama 3,
 * Qwen2) and SentencePiece-style BPE with byte fallback (Llama 1/2, Mistral) are both plain
 * tokenizer.json pipelines, so one wrapper serves both; GGUF vocabularies are converted to the
 * same JSON form by ./gguf-vocab.ts.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConfigError, DataError, MissingArtifactError } from '../errors.ts';

export interface SpecialTokenIds { bos?: number | null; eos?: number | null; pad?: number | null }

export class TextTokenizer {
  private readonly tok: HfTokenizer;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;

  /**
   * `json` is a parsed tokenizer.json; `config` a parsed tokenizer_config.json (or {}); `source`
   * names where they came from in errors. Explicit `special` ids override the config's tokens.
   */
  constructor(json: unknown, config: Record<string, unknown> = {}, readonly source = 'tokenizer.json', special: SpecialTokenIds = {}) {
    try {
      this.tok = new HfTokenizer(json as object, { clean_up_tokenization_spaces: false, ...config });
    } catch (err) {
      throw new ConfigError(`${source}: cannot build tokenizer (${(err as Error).message})`, { cause: err });
    }
    const idOf = (key: string): number | null => {
      const v = config[key];
      const content = typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : null;
      if (content === null) return null;
      const id = this.tok.token_to_id(content);
      if (id === undefined) throw new ConfigError(`${source}: ${key} ${JSON.stringify(content)} is not in the vocabulary`);
      return id;
    };
    this.bosId = special.bos !== undefined ? special.bos : idOf('bos_token');
    this.eosId = special.eos !== undefined ? special.eos : idOf('eos_token');
    this.padId = special.pad !== undefined ? special.pad : idOf('pad_token');
  }

  /** Token ids of `text`; `addSpecialTokens` (default true) applies the post-processor (e.g. BOS). */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Token strings of `text` (same pipeline as encode). */
  tokens(text: string, opts: { addSpecialTokens?: boolean } = {}): string[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).tokens;
  }

  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    const list = Array.from(ids);
    if (list.length === 0) return '';
    const size = this.vocabSize;
    const bad = list.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= size);
    if (bad >= 0) throw new DataError(`${this.source}: token id ${list[bad]} at position ${bad} is outside the vocabulary [0, ${size})`);
    return this.tok.decode(list, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined { return this.tok.token_to_id(token); }
  idToToken(id: number): string | undefined { return this.tok.id_to_token(id); }
  get vocabSize(): number { return this.tok.get_vocab(true).size; }
}

async function readJson(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new MissingArtifactError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? err})`, { cause: err });
  }
  try { return JSON.parse(text); } catch (err) { throw new ConfigError(`${path}: not valid JSON (${(err as Error).message})`); }
}

/**
 * Loads `tokenizer.json` from a model folder (or the file itself), plus `tokenizer_config.json`
 * beside it when present (special tokens, clean-up flags).
 */
export async function loadHfTokenizer(path: string, special: SpecialTokenIds = {}): Promise<TextTokenizer> {
  const isDir = await stat(path).then((s) => s.isDirectory(), () => false);
  const file = isDir ? join(path, 'tokenizer.json') : path;
  const json = await readJson(file, true);
  const config = (await readJson(join(dirname(file), 'tokenizer_config.json'), false)) ?? {};
  return new TextTokenizer(json, config, file, special);
}
