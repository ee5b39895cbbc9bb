/**
 * One-call model loading: a model entry (an id and a path) → config, float32 weights under HF names
 * and the text tokenizer, from either layout:
 *  - a Hugging Face folder: config.json + model.safetensors (or a sharded
 *    model.safetensors.index.json) + tokenizer.json (+ tokenizer_config.json);
 *  - a llama-family .gguf file: config from `<arch>.*` metadata (RoPE scaling included), weights
 *    dequantised with the rope permutation undone, tokenizer from the embedded vocabulary;
 *  - a gemma3 .gguf (e.g. Gemma 3 270M, fetched by infra/fetch-models.sh under the Gemma Terms of
 *    Use): config from gemma3ConfigFromGguf as a ModelConfig with its `gemma3` fields, norm weights
 *    in HF's (1 + w) convention (the file's `+ 1` undone), tokenizer from the embedded vocabulary.
 *
 *   const m = await loadModel({ id: 'smollm2', path: defaultModelPath(env.home, 'smollm2-135m-instruct') });
 *   m.config.numLayers; m.weights.get('model.embed_tokens.weight'); m.tokenizer.encode('Hello');
 *
 * A model that is not there, or not readable in the expected form, throws MissingArtifactError
 * naming the model id, the path and what was expected; configuration problems stay ConfigError
 * (also prefixed with the model id). Pretrained files are put in place by infra/fetch-models.sh.
 */
import { access, constants, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, LayerflowError, MissingArtifactError } from '../errors.ts';
import { loadHfTokenizer, type TextTokenizer } from '../tokenize/tokenizer.ts';
import { tokenizerFromGguf } from '../tokenize/gguf-vocab.ts';
import { GgufReader } from '../weights/gguf.ts';
import { gemma3ConfigFromGguf, loadGgufAsHf, modelConfigFromGemma3, readGgufModelConfig, ROPE_FREQS } from '../weights/gguf-hf.ts';
import type { ModelConfig } from '../weights/hf-config.ts';
import type { WeightMap } from './context.ts';
import { loadHfModel } from './weights-io.ts';

export interface ModelEntry {
  id: string;
  /** An HF folder with config.json + *.safetensors + tokenizer.json, or a .gguf file. */
  path: string;
}

export interface LoadedModel {
  id: string;
  path: string;
  format: 'gguf' | 'hf';
  config: ModelConfig;
  weights: WeightMap;
  tokenizer: TextTokenizer;
}

/** Pretrained models infra/fetch-models.sh installs: name → file under `<home>/models/`. */
export const PRETRAINED_MODELS = {
  'smollm2-135m-instruct': 'smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf',
  /** Gemma 3 270M (Q4_K_M): provided under and subject to the Gemma Terms of Use (GEMMA_TERMS.html beside the file). */
  'gemma3-270m': 'gemma3-270m/gemma-3-270m-q4_k_m.gguf',
} as const;

/** Models whose use is subject to terms of their own: what to tell a researcher who uses them. */
export const MODEL_TERMS: Partial<Record<PretrainedModel, string>> = {
  'gemma3-270m': 'Gemma 3 270M is provided under and subject to the Gemma Terms of Use (ai.google.dev/gemma/terms; a copy is in <home>/models/gemma3-270m/GEMMA_TERMS.html)',
};
export type PretrainedModel = keyof typeof PRETRAINED_MODELS;

/** Where infra/fetch-models.sh puts a pretrained model, for LayerFlow home `home` (LAYERFLOW_HOME). */
export function defaultModelPath(home: string, name: PretrainedModel): string {
  if (!Object.hasOwn(PRETRAINED_MODELS, name)) throw new ConfigError(`unknown pretrained model "${name}"; expected one of ${Object.keys(PRETRAINED_MODELS).join(', ')}`);
  return join(home, 'models', PRETRAINED_MODELS[name]);
}

const EXPECTED = 'a Hugging Face model folder (config.json, model.safetensors or model.safetensors.index.json, tokenizer.json) or a .gguf file';
const FETCH_HINT = ' (pretrained models are fetched by `bash infra/fetch-models.sh`, run by infra/install.sh)';

/** Loads config, weights and tokenizer of `entry` (format chosen by the path: folder → HF, file → GGUF). */
export async function loadModel(entry: ModelEntry): Promise<LoadedModel> {
  const { id, path } = entry;
  const where = `model "${id}" at ${path}`;
  if (typeof path !== 'string' || path === '') throw new ConfigError(`model "${id}": no path given; expected ${EXPECTED}`);
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    const what = err.code === 'ENOENT' ? 'does not exist' : `cannot be read (${err.code ?? err.message})`;
    const hint = Object.values(PRETRAINED_MODELS).some((f) => path.endsWith(f)) ? FETCH_HINT : '';
    throw new MissingArtifactError(`${where}: ${what}; expected ${EXPECTED}${hint}`, { cause: err });
  });
  try {
    if (info.isDirectory()) return { id, path, format: 'hf', ...(await loadHf(path, where)) };
    if (info.isFile() && path.toLowerCase().endsWith('.gguf')) return { id, path, format: 'gguf', ...(await loadGguf(path, where)) };
    throw new MissingArtifactError(`${where}: is ${info.isFile() ? 'a file without the .gguf extension' : 'neither a folder nor a file'}; expected ${EXPECTED}`);
  } catch (err) {
    throw withModel(err, where);
  }
}

async function loadHf(dir: string, where: string): Promise<Omit<LoadedModel, 'id' | 'path' | 'format'>> {
  const names = new Set(await readdir(dir));
  const missing = [
    names.has('config.json') ? null : 'config.json',
    names.has('model.safetensors') || names.has('model.safetensors.index.json') ? null : 'model.safetensors (or model.safetensors.index.json)',
    names.has('tokenizer.json') ? null : 'tokenizer.json',
  ].filter((x): x is string => x !== null);
  if (missing.length) throw new MissingArtifactError(`${where}: the folder has no ${missing.join(', ')}; expected ${EXPECTED}`);
  const { config, weights } = await loadHfModel(dir);
  const tokenizer = await loadHfTokenizer(dir);
  return { config, weights, tokenizer: checkTokenizer(config, tokenizer, where) };
}

async function loadGguf(file: string, where: string): Promise<Omit<LoadedModel, 'id' | 'path' | 'format'>> {
  await access(file, constants.R_OK);
  let reader: GgufReader;
  try { reader = await GgufReader.open(file); } catch (err) {
    if (err instanceof LayerflowError) throw new MissingArtifactError(`${where}: not a readable GGUF file (${err.message})`, { cause: err });
    throw err;
  }
  try {
    const config = reader.metadata.get('general.architecture') === 'gemma3'
      ? modelConfigFromGemma3(gemma3ConfigFromGguf(reader))
      : await readGgufModelConfig(reader);
    const tokenizer = checkTokenizer(config, tokenizerFromGguf(reader.metadata, file), where);
    const { tensors, skipped } = await loadGgufAsHf(reader);
    const unknown = skipped.filter((n) => n !== ROPE_FREQS); // rope_freqs is folded into config.ropeScaling
    if (unknown.length) throw new ConfigError(`${where}: tensors ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''} have no Hugging Face equivalent; this GGUF layout is not supported`);
    const weights: WeightMap = new Map();
    for (const [name, t] of tensors) weights.set(name, { dims: t.shape, data: t.values });
    const embed = weights.get('model.embed_tokens.weight');
    if (!embed) throw new MissingArtifactError(`${where}: no token_embd.weight tensor; expected a complete llama-family or gemma3 GGUF`);
    if (embed.dims.join() !== [config.vocabSize, config.hiddenSize].join()) {
      throw new ConfigError(`${where}: token_embd.weight is [${embed.dims}]; the metadata says [${config.vocabSize}, ${config.hiddenSize}]`);
    }
    return { config, weights, tokenizer };
  } finally {
    await reader.close();
  }
}

/** Every token id the tokenizer can produce must have an embedding row. */
function checkTokenizer(config: ModelConfig, tok: TextTokenizer, where: string): TextTokenizer {
  if (tok.vocabSize > config.vocabSize) throw new ConfigError(`${where}: the tokenizer has ${tok.vocabSize} tokens but the model only ${config.vocabSize} embedding rows`);
  return tok;
}

/** Adds the model id and path to an error's message (same class); fs errors become MissingArtifactError. */
function withModel(err: unknown, where: string): Error {
  if (err instanceof LayerflowError) {
    if (err.message.startsWith(where)) return err;
    const Ctor = err.constructor as new (message: string, options?: { cause?: unknown }) => LayerflowError;
    return new Ctor(`${where}: ${err.message}`, { cause: err });
  }
  const code = (err as NodeJS.ErrnoException)?.code;
  if (typeof code === 'string') return new MissingArtifactError(`${where}: cannot be read (${code}: ${(err as Error).message}); expected ${EXPECTED}`, { cause: err });
  return err as Error;
}
