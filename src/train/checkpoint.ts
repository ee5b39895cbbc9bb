/**
 * Training checkpoints in a directory (DESIGN.md contract 3, 4): tensors in safetensors, state in
 * JSON, every file written atomically (src/store/atomic.ts), files named by step so a crash between
 * two writes never pairs a state with the wrong tensors:
 *
 *   state.json                 last checkpoint: step, RNG state, schedule, history, best, file + sha256
 *   last-<step>.safetensors    param.<name>, adam_m.<name>, adam_v.<name> (F32)
 *   best.json                  best validation checkpoint: step, epoch, valLoss, file + sha256
 *   best-<step>.safetensors    param.<name> (F32; plain names, loadable as weights)
 *
 * Readers verify the sha256 recorded in the JSON.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, DataError, MissingArtifactError } from '../errors.ts';
import { writeFileAtomic } from '../store/atomic.ts';
import { rawToFloat32, readSafetensors, serializeSafetensors, type TensorInput } from '../weights/safetensors.ts';

export type ParamMap = Map<string, Float32Array>;
export type ShapeMap = Map<string, number[]>;

export const STATE_FILE = 'state.json';
export const BEST_FILE = 'best.json';

/** `score`: the run's selection score of this epoch (e.g. validation accuracy), when it selects by one. */
export interface EpochRecord { epoch: number; step: number; trainLoss: number; valLoss: number | null; score?: number }

/** Everything needed to continue a run exactly where it stopped. */
export interface TrainState {
  version: 1;
  /** Completed optimizer updates. */
  step: number;
  totalSteps: number;
  stepsPerEpoch: number;
  warmupSteps: number;
  /** RNG state at the start of the current epoch (its shuffle is redrawn from it) and the seed. */
  seed: number;
  epochRngState: number;
  /** Identity of the run's settings; resuming with different settings is a ConfigError. */
  fingerprint: Record<string, unknown>;
  /** Mean training loss of every completed step. */
  stepLosses: number[];
  history: EpochRecord[];
  best: BestInfo | null;
  file: string;
  sha256: string;
}

export interface BestInfo { step: number; epoch: number; valLoss: number; score?: number; file: string; sha256: string }

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const pad = (step: number): string => String(step).padStart(8, '0');

function tensors(prefix: string, m: ParamMap, shapes: ShapeMap, into: Map<string, TensorInput>): void {
  for (const [name, v] of m) into.set(`${prefix}${name}`, { dtype: 'F32', shape: shapes.get(name) ?? [v.length], values: v });
}

/** Writes the last checkpoint (tensors, then state.json) and removes superseded files. */
export async function saveCheckpoint(args: {
  dir: string; params: ParamMap; m: ParamMap; v: ParamMap; shapes: ShapeMap;
  state: Omit<TrainState, 'file' | 'sha256'>;
}): Promise<TrainState> {
  const t = new Map<string, TensorInput>();
  tensors('param.', args.params, args.shapes, t);
  tensors('adam_m.', args.m, args.shapes, t);
  tensors('adam_v.', args.v, args.shapes, t);
  const bytes = serializeSafetensors(t, { format: 'pt', kind: 'layerflow-train-checkpoint', step: String(args.state.step) });
  const file = `last-${pad(args.state.step)}.safetensors`;
  await writeFileAtomic(join(args.dir, file), bytes);
  const state: TrainState = { ...args.state, file, sha256: sha256(bytes) };
  await writeFileAtomic(join(args.dir, STATE_FILE), JSON.stringify(state, null, 1));
  await prune(args.dir, state);
  return state;
}

/** Writes the best-validation parameters and best.json. Returns the record for state.json. */
export async function saveBest(args: { dir: string; params: ParamMap; shapes: ShapeMap; step: number; epoch: number; valLoss: number; score?: number }): Promise<BestInfo> {
  const t = new Map<string, TensorInput>();
  tensors('', args.params, args.shapes, t);
  const bytes = serializeSafetensors(t, { format: 'pt', kind: 'layerflow-best-checkpoint', step: String(args.step), val_loss: String(args.valLoss) });
  const file = `best-${pad(args.step)}.safetensors`;
  await writeFileAtomic(join(args.dir, file), bytes);
  const info: BestInfo = { step: args.step, epoch: args.epoch, valLoss: args.valLoss, ...(args.score !== undefined ? { score: args.score } : {}), file, sha256: sha256(bytes) };
  await writeFileAtomic(join(args.dir, BEST_FILE), JSON.stringify(info, null, 1));
  return info;
}

/** Removes last-*.safetensors other than the current one and best-* files nobody references. */
async function prune(dir: string, state: TrainState): Promise<void> {
  let bestFile: string | undefined = state.best?.file;
  try { bestFile = (JSON.parse(await readFile(join(dir, BEST_FILE), 'utf8')) as BestInfo).file; } catch { /* none yet */ }
  const keep = new Set([state.file, bestFile, state.best?.file]);
  for (const f of await readdir(dir)) {
    if (/^(last|best)-\d+\.safetensors$/.test(f) && !keep.has(f)) await rm(join(dir, f), { force: true });
  }
}

async function readJson<T>(path: string): Promise<T | null> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  try { return JSON.parse(text) as T; } catch (e) { throw new DataError(`${path}: not valid JSON (${(e as Error).message})`, { cause: e }); }
}

export async function readCheckpointTensors(dir: string, file: string, sha: string): Promise<Map<string, Float32Array>> {
  const path = join(dir, file);
  let bytes: Buffer;
  try { bytes = await readFile(path); } catch (e) {
    throw new MissingArtifactError(`${path}: checkpoint tensors not found (${(e as NodeJS.ErrnoException).code ?? e})`, { cause: e });
  }
  if (sha256(bytes) !== sha) throw new MissingArtifactError(`${path}: sha256 ${sha256(bytes).slice(0, 12)}… does not match the recorded ${sha.slice(0, 12)}…; the checkpoint is corrupt`);
  const { tensors: t } = await readSafetensors(path);
  const out = new Map<string, Float32Array>();
  for (const [k, raw] of t) out.set(k, rawToFloat32(raw, `${path}: tensor "${k}"`));
  return out;
}

/** The last checkpoint of `dir`, or null when there is none. */
export async function loadCheckpoint(dir: string): Promise<{ state: TrainState; params: ParamMap; m: ParamMap; v: ParamMap } | null> {
  const state = await readJson<TrainState>(join(dir, STATE_FILE));
  if (!state) return null;
  if (state.version !== 1) throw new ConfigError(`${join(dir, STATE_FILE)}: version ${state.version}; expected 1`);
  const all = await readCheckpointTensors(dir, state.file, state.sha256);
  const params: ParamMap = new Map(), m: ParamMap = new Map(), v: ParamMap = new Map();
  for (const [k, x] of all) {
    const [kind, ...rest] = k.split('.');
    const name = rest.join('.');
    if (kind === 'param') params.set(name, x);
    else if (kind === 'adam_m') m.set(name, x);
    else if (kind === 'adam_v') v.set(name, x);
  }
  return { state, params, m, v };
}

/** The best-validation parameters of `dir` (verified), or null when no epoch was evaluated. */
export async function loadBestCheckpoint(dir: string): Promise<{ info: BestInfo; params: ParamMap } | null> {
  const info = await readJson<BestInfo>(join(dir, BEST_FILE));
  if (!info) return null;
  return { info, params: await readCheckpointTensors(dir, info.file, info.sha256) };
}
