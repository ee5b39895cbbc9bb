/**
 * LoRA adapters in PEFT's on-disk layout, so they load with `PeftModel.from_pretrained(dir)`:
 *   <dir>/adapter_config.json        LoraConfig fields (peft_type "LORA", r, lora_alpha, ...)
 *   <dir>/adapter_model.safetensors  base_model.model.<module>.lora_A.weight  [r, in_features]
 *                                    base_model.model.<module>.lora_B.weight  [out_features, r]
 * where <module> is the HF module path, e.g. "model.layers.0.self_attn.q_proj".
 * The update is W + (lora_alpha / r) * B @ A (or lora_alpha / sqrt(r) with use_rslora).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, DataError, MissingArtifactError } from '../errors.ts';
import { writeFileAtomic } from '../store/atomic.ts';
import { SafetensorsReader, writeSafetensors, type FloatTensor } from './safetensors.ts';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export interface LoraConfig {
  r: number;
  loraAlpha: number;
  loraDropout: number;
  /** Module names (suffixes) PEFT matches, e.g. ["q_proj", "v_proj"]; a string is a full-match regex. */
  targetModules: string[] | string;
  baseModelNameOrPath: string | null;
  taskType: string;
  useRslora?: boolean;
  bias?: 'none' | 'all' | 'lora_only';
  /** True for Conv1D-style modules that store W as [in, out] (GPT-2); lora_A/lora_B keep their usual shapes. */
  fanInFanOut?: boolean;
}

export interface LoraPair {
  /** lora_A: [r, in_features], row-major. */
  a: { shape: [number, number]; values: Float32Array };
  /** lora_B: [out_features, r], row-major. */
  b: { shape: [number, number]; values: Float32Array };
}

/** Safetensors key of one LoRA factor. */
export function peftKey(module: string, which: 'A' | 'B'): string {
  return `base_model.model.${module}.lora_${which}.weight`;
}

/** The adapter_config.json object PEFT writes for these settings (all LoraConfig defaults spelled out). */
export function peftConfigJson(c: LoraConfig): Record<string, unknown> {
  return {
    alpha_pattern: {}, auto_mapping: null, base_model_name_or_path: c.baseModelNameOrPath, bias: c.bias ?? 'none',
    fan_in_fan_out: c.fanInFanOut ?? false, inference_mode: true, init_lora_weights: true, layers_pattern: null, layers_to_transform: null,
    lora_alpha: c.loraAlpha, lora_dropout: c.loraDropout, modules_to_save: null, peft_type: 'LORA', r: c.r,
    rank_pattern: {}, revision: null, target_modules: c.targetModules, task_type: c.taskType,
    use_dora: false, use_rslora: c.useRslora ?? false,
  };
}

function checkPair(module: string, p: LoraPair, r: number, where: string): void {
  const [ra, inF] = p.a.shape, [outF, rb] = p.b.shape;
  if (ra !== r || rb !== r) throw new DataError(`${where}: module "${module}": lora_A is [${p.a.shape}] and lora_B is [${p.b.shape}]; expected [${r}, in] and [out, ${r}] (r = ${r})`);
  if (p.a.values.length !== ra * inF || p.b.values.length !== outF * rb) throw new DataError(`${where}: module "${module}": value counts do not match shapes`);
}

/** Writes adapter_config.json and adapter_model.safetensors (each atomically). `dtype` defaults to F32. */
export async function writePeftAdapter(args: { dir: string; config: LoraConfig; weights: Map<string, LoraPair>; dtype?: 'F32' | 'F16' | 'BF16' }): Promise<void> {
  const { dir, config, weights, dtype = 'F32' } = args;
  validateConfig(peftConfigJson(config), dir);
  const tensors = new Map<string, FloatTensor>();
  for (const [module, p] of weights) {
    checkPair(module, p, config.r, dir);
    tensors.set(peftKey(module, 'A'), { dtype, shape: [...p.a.shape], values: p.a.values });
    tensors.set(peftKey(module, 'B'), { dtype, shape: [...p.b.shape], values: p.b.values });
  }
  await writeSafetensors(join(dir, ADAPTER_WEIGHTS), tensors, { format: 'pt' });
  await writeFileAtomic(join(dir, ADAPTER_CONFIG), JSON.stringify(peftConfigJson(config), null, 2) + '\n');
}

function validateConfig(j: Record<string, unknown>, file: string): LoraConfig {
  const bad = (field: string, want: string) => new ConfigError(`${file}: field "${field}" is ${JSON.stringify(j[field])}; expected ${want}`);
  if (j.peft_type !== 'LORA') throw bad('peft_type', '"LORA"');
  if (!Number.isInteger(j.r) || (j.r as number) <= 0) throw bad('r', 'a positive integer');
  if (typeof j.lora_alpha !== 'number' || !(j.lora_alpha > 0)) throw bad('lora_alpha', 'a positive number');
  const dropout = j.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || dropout < 0 || dropout >= 1) throw bad('lora_dropout', 'a number in [0, 1)');
  const tm = j.target_modules;
  if (!(typeof tm === 'string' || (Array.isArray(tm) && tm.length > 0 && tm.every((x) => typeof x === 'string')))) throw bad('target_modules', 'a non-empty list of module names or a regex string');
  const base = j.base_model_name_or_path ?? null;
  if (base !== null && typeof base !== 'string') throw bad('base_model_name_or_path', 'a string or null');
  const task = j.task_type ?? 'CAUSAL_LM';
  if (typeof task !== 'string') throw bad('task_type', 'a string such as "CAUSAL_LM"');
  for (const f of ['rank_pattern', 'alpha_pattern'] as const) {
    if (j[f] && Object.keys(j[f] as object).length > 0) throw new ConfigError(`${file}: field "${f}" is non-empty; per-module ranks/alphas are not supported`);
  }
  if (j.use_dora === true) throw bad('use_dora', 'false (DoRA is not supported)');
  return {
    r: j.r as number, loraAlpha: j.lora_alpha, loraDropout: dropout, targetModules: tm as string[] | string,
    baseModelNameOrPath: base as string | null, taskType: task, useRslora: j.use_rslora === true,
    bias: (j.bias ?? 'none') as LoraConfig['bias'], fanInFanOut: j.fan_in_fan_out === true,
  };
}

/** Reads a PEFT LoRA adapter folder; every module must have both factors with consistent rank. */
export async function readPeftAdapter(dir: string): Promise<{ config: LoraConfig; weights: Map<string, LoraPair> }> {
  const cfgPath = join(dir, ADAPTER_CONFIG);
  let text: string;
  try { text = await readFile(cfgPath, 'utf8'); } catch (err) {
    throw new MissingArtifactError(`${cfgPath}: cannot read adapter config (${(err as NodeJS.ErrnoException).code ?? err})`, { cause: err });
  }
  let json: unknown;
  try { json = JSON.parse(text); } catch (err) { throw new ConfigError(`${cfgPath}: not valid JSON (${(err as Error).message})`); }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError(`${cfgPath}: expected a JSON object`);
  const config = validateConfig(json as Record<string, unknown>, cfgPath);
  const wPath = join(dir, ADAPTER_WEIGHTS);
  const reader = await SafetensorsReader.open(wPath).catch((err) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingArtifactError(`${wPath}: adapter weights not found`, { cause: err });
    throw err;
  });
  try {
    const halves = new Map<string, Partial<LoraPair>>();
    for (const key of reader.names()) {
      const m = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(key);
      if (!m) throw new DataError(`${wPath}: unsupported key "${key}"; expected base_model.model.<module>.lora_A.weight / lora_B.weight`);
      const { shape, values } = await reader.readFloat32(key);
      if (shape.length !== 2) throw new DataError(`${wPath}: "${key}" has shape [${shape}]; expected 2 dimensions`);
      const h = halves.get(m[1]) ?? {};
      h[m[2] === 'A' ? 'a' : 'b'] = { shape: shape as [number, number], values };
      halves.set(m[1], h);
    }
    const weights = new Map<string, LoraPair>();
    for (const [module, h] of [...halves].sort(([x], [y]) => (x < y ? -1 : 1))) {
      if (!h.a || !h.b) throw new DataError(`${wPath}: module "${module}" has lora_${h.a ? 'A' : 'B'} but no lora_${h.a ? 'B' : 'A'}`);
      checkPair(module, h as LoraPair, config.r, wPath);
      weights.set(module, h as LoraPair);
    }
    return { config, weights };
  } finally {
    await reader.close();
  }
}
