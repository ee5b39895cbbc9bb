/**
 * Weights in and out of the graphs: an HF model folder (config.json + model.safetensors or a
 * sharded model.safetensors.index.json) → WeightMap keyed by the graph's input names, PEFT adapters
 * ↔ WeightMap, and random weights for tests.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, MissingArtifactError } from '../errors.ts';
import { readHfConfig, type ModelConfig } from '../weights/hf-config.ts';
import { peftKey, type LoraPair } from '../weights/peft.ts';
import { SafetensorsReader } from '../weights/safetensors.ts';
import type { WeightMap } from './context.ts';
import { mulberry32 } from './lora.ts';

/** HF checkpoint key → graph name (GPT-2 checkpoints often lack the "transformer." prefix). */
export function graphWeightName(config: ModelConfig, key: string): string {
  if (config.modelType === 'gpt2' && !/^(transformer|lm_head|score|base_model)\./.test(key)) return `transformer.${key}`;
  return key;
}

/** Reads safetensors files into a WeightMap (float32), renaming keys with graphWeightName; skips non-float buffers (e.g. GPT-2 attn.bias masks). */
export async function readWeights(config: ModelConfig, files: string[]): Promise<WeightMap> {
  const out: WeightMap = new Map();
  for (const f of files) {
    const r = await SafetensorsReader.open(f).catch((err) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingArtifactError(`${f}: weights file not found`, { cause: err });
      throw err;
    });
    try {
      for (const name of r.names()) {
        if (/\.attn\.(masked_)?bias$/.test(name)) continue; // GPT-2 causal-mask buffers
        const { shape, values } = await r.readFloat32(name);
        out.set(graphWeightName(config, name), { dims: shape, data: values });
      }
    } finally {
      await r.close();
    }
  }
  return out;
}

/** Loads config.json and the weights of an HF model folder. */
export async function loadHfModel(dir: string): Promise<{ config: ModelConfig; weights: WeightMap }> {
  const config = await readHfConfig(join(dir, 'config.json'));
  let files = [join(dir, 'model.safetensors')];
  try {
    const idx = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map?: Record<string, string> };
    if (!idx.weight_map) throw new ConfigError(`${dir}/model.safetensors.index.json: no weight_map`);
    files = [...new Set(Object.values(idx.weight_map))].map((f) => join(dir, f));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { config, weights: await readWeights(config, files) };
}

/** LoRA pairs by module (peft.ts) → WeightMap entries named by PEFT keys (the graph input names). */
export function loraToWeights(pairs: Map<string, LoraPair>, into: WeightMap = new Map()): WeightMap {
  for (const [m, p] of pairs) {
    into.set(peftKey(m, 'A'), { dims: [...p.a.shape], data: p.a.values });
    into.set(peftKey(m, 'B'), { dims: [...p.b.shape], data: p.b.values });
  }
  return into;
}

/** The inverse: PEFT-keyed WeightMap entries (e.g. after training) → LoRA pairs for writePeftAdapter. */
export function weightsToLora(weights: WeightMap): Map<string, LoraPair> {
  const out = new Map<string, LoraPair>();
  for (const [k, v] of weights) {
    const m = /^base_model\.model\.(.+)\.lora_A\.weight$/.exec(k);
    if (!m) continue;
    const b = weights.get(peftKey(m[1], 'B'));
    if (!b) throw new MissingArtifactError(`weights have ${k} but no ${peftKey(m[1], 'B')}`);
    out.set(m[1], { a: { shape: v.dims as [number, number], values: Float32Array.from(v.data) }, b: { shape: b.dims as [number, number], values: Float32Array.from(b.data) } });
  }
  return out;
}

/** Random weights for every `shapes` entry: norm weights (names containing "norm" / "ln_") ≈ 1, others U(−scale, scale). */
export function randomWeights(shapes: { name: string; shape: number[] }[], seed = 0, scale = 0.1): WeightMap {
  const rnd = mulberry32(seed);
  const out: WeightMap = new Map();
  for (const { name, shape } of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNorm = /norm|ln_/.test(name) && name.endsWith('.weight');
    out.set(name, { dims: [...shape], data: Float32Array.from({ length: n }, () => (isNorm ? 1 + (2 * rnd() - 1) * scale : (2 * rnd() - 1) * scale)) });
  }
  return out;
}
