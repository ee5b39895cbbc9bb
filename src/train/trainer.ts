/**
 * The optimiser loop: seeded shuffling, micro-batches with gradient accumulation, AdamW with a
 * cosine-with-warmup schedule, validation every epoch, the best-validation checkpoint kept, and
 * resumable checkpoints (params + moments + step + RNG state + schedule position).
 *
 * The numerical work is behind `TrainObjective` (loss and gradients of the trainable tensors for a
 * list of examples), normally an ONNX session (./objective.ts); the loop itself is plain TS.
 *
 * Step semantics: one optimizer step consumes `microBatchSize · gradAccumulation` examples of the
 * epoch's shuffled order (the last step of an epoch may get fewer); its gradient is the mean of the
 * micro-batch gradients weighted by each micro-batch's `weight` (default its example count), which
 * equals the gradient of one large batch for a mean loss.
 */
import { ConfigError, DataError } from '../errors.ts';
import { adamwHyper, adamwStepInto, type AdamWConfig } from './adamw.ts';
import {
  loadCheckpoint, readCheckpointTensors, saveBest, saveCheckpoint,
  type BestInfo, type EpochRecord, type ParamMap, type ShapeMap, type TrainState,
} from './checkpoint.ts';
import { createRng } from '../data/random.ts';
import { cosineWithWarmup, warmupStepsOf } from './schedule.ts';

export interface LossAndGrads {
  /** Mean loss over the examples. */
  loss: number;
  /** Gradient of that mean loss for every trainable tensor (row-major, same length as the param). */
  grads: Map<string, ArrayLike<number>>;
  /** What the mean is over (examples, or target tokens for a token-mean loss); default examples.length. */
  weight?: number;
}

export interface TrainObjective<E> {
  lossAndGrads(args: { params: ParamMap; examples: E[] }): Promise<LossAndGrads>;
  /** Mean loss (and its weight) without gradients, for validation; default: lossAndGrads' loss. */
  loss?(args: { params: ParamMap; examples: E[] }): Promise<{ loss: number; weight?: number }>;
}

export interface StepInfo { step: number; epoch: number; loss: number; lr: number; gradNorm: number; seconds: number; totalSteps: number }
export interface EvalInfo { epoch: number; step: number; trainLoss: number; valLoss: number | null; /** With selectScore: this epoch's score. */ score?: number; best: boolean; /** The parameters after this epoch (do not modify). */ params: ParamMap }

export interface TrainOptions<E> {
  objective: TrainObjective<E>;
  /** Initial trainable tensors (copied; not modified). */
  params: ParamMap;
  /** Shapes for the checkpoint files (default: 1-D). */
  shapes?: ShapeMap;
  train: E[];
  validation?: E[];
  epochs: number;
  microBatchSize: number;
  /** Micro-batches per optimizer step (default 1). */
  gradAccumulation?: number;
  /** Peak learning rate. */
  lr: number;
  minLr?: number;
  /** Default 0.1. */
  warmupRatio?: number;
  warmupSteps?: number;
  adamw?: AdamWConfig;
  /** Tensors excluded from weight decay (e.g. norms); default none. */
  noDecay?: (name: string) => boolean;
  /** Clip the global gradient L2 norm to this value before the update (default: no clipping). */
  maxGradNorm?: number;
  seed: number;
  /** Shuffle each epoch (default true). */
  shuffle?: boolean;
  /** Validation micro-batch size (default microBatchSize). */
  evalBatchSize?: number;
  /** Where checkpoints live; without it nothing is saved and nothing resumes. */
  checkpointDir?: string;
  /** Also save every this many steps (the end of every epoch always saves). */
  checkpointEvery?: number;
  /** Continue from checkpointDir's last checkpoint when there is one (default true). */
  resume?: boolean;
  /** Stop (after saving a checkpoint) once this many steps are done; the schedule still spans all epochs. */
  stopAtStep?: number;
  onStep?(info: StepInfo): void | Promise<void>;
  onEval?(info: EvalInfo): void | Promise<void>;
  /**
   * Select the best checkpoint by this score of each epoch's parameters (higher is better; a tie goes
   * to the lower validation loss) instead of by validation loss alone. The score is kept in the
   * history and the checkpoints, so a run resumed after a crash selects exactly as an undisturbed one.
   */
  selectScore?(info: { epoch: number; step: number; params: ParamMap }): Promise<number>;
  /** Checked before every step: an aborted signal stops training by throwing its reason (after the last checkpoint). */
  signal?: AbortSignal;
}

export interface TrainResult {
  params: ParamMap;
  steps: number;
  totalSteps: number;
  stepLosses: number[];
  history: EpochRecord[];
  /** Best validation epoch and its parameters (null without validation data). */
  best: (Omit<BestInfo, 'file' | 'sha256'> & { params: ParamMap }) | null;
  /** Step the run resumed from (0 for a fresh start). */
  resumedFrom: number;
  /** False when stopped early by stopAtStep. */
  finished: boolean;
}

const copy = (m: ParamMap): ParamMap => new Map([...m].map(([k, v]) => [k, Float32Array.from(v)]));

function checkOptions<E>(o: TrainOptions<E>): void {
  const int = (v: unknown, what: string, min = 1) => {
    if (!Number.isInteger(v) || (v as number) < min) throw new ConfigError(`train: ${what} is ${v}; expected an integer >= ${min}`);
  };
  int(o.epochs, 'epochs');
  int(o.microBatchSize, 'microBatchSize');
  int(o.gradAccumulation ?? 1, 'gradAccumulation');
  int(o.seed, 'seed', -(2 ** 31));
  if (o.evalBatchSize !== undefined) int(o.evalBatchSize, 'evalBatchSize');
  if (o.checkpointEvery !== undefined) int(o.checkpointEvery, 'checkpointEvery');
  if (o.stopAtStep !== undefined) int(o.stopAtStep, 'stopAtStep', 0);
  if (!(o.lr > 0) || !Number.isFinite(o.lr)) throw new ConfigError(`train: lr is ${o.lr}; expected a finite number > 0`);
  if (o.maxGradNorm !== undefined && !(o.maxGradNorm > 0)) throw new ConfigError(`train: maxGradNorm is ${o.maxGradNorm}; expected > 0`);
  if (o.train.length === 0) throw new DataError('train: no training examples');
  if (o.params.size === 0) throw new ConfigError('train: no trainable parameters');
}

/** Throws DataError naming the step when a loss or gradient is NaN / Inf. */
function checkFinite(where: string, loss: number, grads?: Map<string, ArrayLike<number>>, params?: ParamMap): void {
  if (!Number.isFinite(loss)) throw new DataError(`${where}: loss is ${loss}; expected a finite number (diverged? lower the learning rate or check the data)`);
  if (!grads || !params) return;
  for (const [name, p] of params) {
    const g = grads.get(name);
    if (!g) throw new DataError(`${where}: the objective returned no gradient for "${name}"`);
    if (g.length !== p.length) throw new DataError(`${where}: gradient of "${name}" has ${g.length} elements; the parameter has ${p.length}`);
    for (let i = 0; i < g.length; i++) {
      if (!Number.isFinite(g[i])) throw new DataError(`${where}: gradient of "${name}" is ${g[i]} at element ${i}; expected finite values`);
    }
  }
}

/** Mean validation loss over `examples` in batches (weighted by each batch's weight). */
export async function evaluateLoss<E>(args: { objective: TrainObjective<E>; params: ParamMap; examples: E[]; batchSize: number }): Promise<number> {
  const { objective, params, examples, batchSize } = args;
  if (!examples.length) throw new DataError('evaluate: no examples');
  let sum = 0, weight = 0;
  for (let i = 0; i < examples.length; i += batchSize) {
    const batch = examples.slice(i, i + batchSize);
    const r = objective.loss ? await objective.loss({ params, examples: batch }) : await objective.lossAndGrads({ params, examples: batch });
    const w = r.weight ?? batch.length;
    sum += r.loss * w;
    weight += w;
  }
  return sum / weight;
}

export async function train<E>(o: TrainOptions<E>): Promise<TrainResult> {
  checkOptions(o);
  const hyper = adamwHyper(o.adamw);
  const N = o.train.length, micro = o.microBatchSize, accum = o.gradAccumulation ?? 1;
  const perStep = micro * accum;
  const stepsPerEpoch = Math.ceil(N / perStep);
  const totalSteps = stepsPerEpoch * o.epochs;
  const schedule = { peakLr: o.lr, totalSteps, warmupRatio: o.warmupRatio, warmupSteps: o.warmupSteps, minLr: o.minLr };
  const warmupSteps = warmupStepsOf(schedule);
  const shapes: ShapeMap = o.shapes ?? new Map([...o.params].map(([k, v]) => [k, [v.length]]));
  const fingerprint: Record<string, unknown> = {
    epochs: o.epochs, microBatchSize: micro, gradAccumulation: accum, lr: o.lr, minLr: o.minLr ?? 0, warmupSteps,
    adamw: hyper, maxGradNorm: o.maxGradNorm ?? null, seed: o.seed, shuffle: o.shuffle ?? true,
    trainSize: N, validationSize: o.validation?.length ?? 0,
    params: Object.fromEntries([...o.params].map(([k, v]) => [k, v.length])),
  };

  let params = copy(o.params);
  let m: ParamMap = new Map([...params].map(([k, v]) => [k, new Float32Array(v.length)]));
  let v: ParamMap = new Map([...params].map(([k, x]) => [k, new Float32Array(x.length)]));
  let step = 0;
  let epochRngState = createRng(o.seed).state;
  let stepLosses: number[] = [];
  let history: EpochRecord[] = [];
  let best: BestInfo | null = null;
  let bestParams: ParamMap | null = null;
  let resumedFrom = 0;

  if (o.checkpointDir && (o.resume ?? true)) {
    const ck = await loadCheckpoint(o.checkpointDir);
    if (ck) {
      const { state } = ck;
      for (const [k, want] of Object.entries(fingerprint)) {
        const have = state.fingerprint[k];
        if (JSON.stringify(have) !== JSON.stringify(want)) {
          throw new ConfigError(`train: checkpoint ${o.checkpointDir} was made with ${k} = ${JSON.stringify(have)} but this run has ${JSON.stringify(want)}; use a fresh checkpointDir or resume: false`);
        }
      }
      params = ck.params; m = ck.m; v = ck.v;
      step = state.step;
      epochRngState = state.epochRngState;
      stepLosses = state.stepLosses;
      history = state.history;
      best = state.best;
      if (best) bestParams = await readCheckpointTensors(o.checkpointDir, best.file, best.sha256);
      resumedFrom = step;
    }
  }

  const evalBatch = o.evalBatchSize ?? micro;
  const accBuf = new Map([...params].map(([k, x]) => [k, new Float64Array(x.length)]));
  const doShuffle = o.shuffle ?? true;
  // Each epoch's order is drawn from the RNG state at its start (saved in checkpoints), so a
  // resumed run redraws the same order; at the end of an epoch the state moves past that draw.
  let order: number[] | null = null;
  let nextEpochRngState = epochRngState;
  const drawOrder = (): number[] => {
    const r = createRng(epochRngState);
    const out = doShuffle ? r.permutation(N) : Array.from({ length: N }, (_, i) => i);
    nextEpochRngState = r.state;
    return out;
  };

  const snapshotState = (): Omit<TrainState, 'file' | 'sha256'> => ({
    version: 1, step, totalSteps, stepsPerEpoch, warmupSteps, seed: o.seed, epochRngState, fingerprint,
    stepLosses: [...stepLosses], history: [...history], best,
  });
  const save = async () => {
    if (o.checkpointDir) await saveCheckpoint({ dir: o.checkpointDir, params, m, v, shapes, state: snapshotState() });
  };

  const evaluateEpoch = async (e: number) => {
    const first = e * stepsPerEpoch, last = Math.min(step, (e + 1) * stepsPerEpoch);
    const trainLoss = stepLosses.slice(first, last).reduce((a, b) => a + b, 0) / Math.max(1, last - first);
    let valLoss: number | null = null, isBest = false, score: number | undefined;
    if (o.validation?.length) {
      valLoss = await evaluateLoss({ objective: o.objective, params, examples: o.validation, batchSize: evalBatch });
      checkFinite(`validation after epoch ${e + 1} (step ${step})`, valLoss);
      if (o.selectScore) {
        score = await o.selectScore({ epoch: e + 1, step, params });
        checkFinite(`selection score after epoch ${e + 1} (step ${step})`, score);
      }
      const better = !best || (score !== undefined
        ? score > (best.score ?? -Infinity) || (score === best.score && valLoss < best.valLoss)
        : valLoss < best.valLoss);
      if (better) {
        isBest = true;
        bestParams = copy(params);
        best = o.checkpointDir
          ? await saveBest({ dir: o.checkpointDir, params, shapes, step, epoch: e + 1, valLoss, score })
          : { step, epoch: e + 1, valLoss, ...(score !== undefined ? { score } : {}), file: '', sha256: '' };
      }
    }
    history.push({ epoch: e + 1, step, trainLoss, valLoss, ...(score !== undefined ? { score } : {}) });
    await o.onEval?.({ epoch: e + 1, step, trainLoss, valLoss, ...(score !== undefined ? { score } : {}), best: isBest, params });
  };

  // A checkpoint saved at an epoch end already holds that epoch's evaluation; catch up otherwise.
  if (step > 0 && step % stepsPerEpoch === 0 && !history.some((h) => h.step === step)) {
    await evaluateEpoch(step / stepsPerEpoch - 1);
    await save();
  }

  let finished = true;
  while (step < totalSteps) {
    if (o.stopAtStep !== undefined && step >= o.stopAtStep) { finished = false; break; }
    o.signal?.throwIfAborted();
    const t0 = performance.now();
    const e = Math.floor(step / stepsPerEpoch);
    order ??= drawOrder();
    const inEpoch = step - e * stepsPerEpoch;
    const ids = order.slice(inEpoch * perStep, Math.min(N, (inEpoch + 1) * perStep));
    const where = (k: number, K: number) => `training step ${step + 1} (epoch ${e + 1}, micro-batch ${k + 1}/${K})`;

    for (const a of accBuf.values()) a.fill(0);
    let lossSum = 0, weight = 0;
    const K = Math.ceil(ids.length / micro);
    for (let k = 0; k < K; k++) {
      const examples = ids.slice(k * micro, (k + 1) * micro).map((i) => o.train[i]);
      const r = await o.objective.lossAndGrads({ params, examples });
      checkFinite(where(k, K), r.loss, r.grads, params);
      const w = r.weight ?? examples.length;
      if (!(w > 0)) throw new DataError(`${where(k, K)}: the micro-batch weight is ${w}; expected > 0 (no target tokens?)`);
      lossSum += r.loss * w;
      weight += w;
      for (const [name, acc] of accBuf) {
        const g = r.grads.get(name)!;
        for (let i = 0; i < acc.length; i++) acc[i] += w * g[i];
      }
    }
    let sq = 0;
    for (const acc of accBuf.values()) {
      for (let i = 0; i < acc.length; i++) { acc[i] /= weight; sq += acc[i] * acc[i]; }
    }
    const gradNorm = Math.sqrt(sq);
    if (!Number.isFinite(gradNorm)) throw new DataError(`training step ${step + 1} (epoch ${e + 1}): gradient norm is ${gradNorm} (overflow); expected finite`);
    if (o.maxGradNorm !== undefined && gradNorm > o.maxGradNorm) {
      const s = o.maxGradNorm / (gradNorm + 1e-6);
      for (const acc of accBuf.values()) for (let i = 0; i < acc.length; i++) acc[i] *= s;
    }
    const lr = cosineWithWarmup(schedule, step);
    for (const [name, p] of params) {
      const decay = o.noDecay?.(name) ? 0 : hyper.weightDecay;
      adamwStepInto({ ...hyper, weightDecay: decay, param: p, grad: accBuf.get(name)!, m: m.get(name)!, v: v.get(name)!, t: step + 1, lr, name }, { param: p, m: m.get(name)!, v: v.get(name)! });
    }
    const loss = lossSum / weight;
    stepLosses.push(loss);
    step++;

    const endOfEpoch = step % stepsPerEpoch === 0;
    if (endOfEpoch) {
      epochRngState = nextEpochRngState;
      order = null;
      await evaluateEpoch(e);
    }
    if (endOfEpoch || (o.checkpointEvery && step % o.checkpointEvery === 0) || step === o.stopAtStep) await save();
    await o.onStep?.({ step, epoch: e + 1, loss, lr, gradNorm, seconds: (performance.now() - t0) / 1000, totalSteps });
  }

  const b = best as BestInfo | null;
  return {
    params, steps: step, totalSteps, stepLosses, history, resumedFrom, finished,
    best: b && bestParams ? { step: b.step, epoch: b.epoch, valLoss: b.valLoss, ...(b.score !== undefined ? { score: b.score } : {}), params: bestParams } : null,
  };
}
