/**
 * Adapter fine-tuning of a pretrained LM, in the two forms the papers use:
 *  - a LoRA sequence classifier (NDR, SCIENCE.md §4): LoRA adapters plus a classification head
 *    `score.weight` (the paper's CL layer) on the last real token (`numLabels` set);
 *  - a causal LM trained on the answer tokens only (LayerIF's instruction data, §1), with LoRA or
 *    LoRA-MoE adapters (§3a; `numLabels` absent, samples carry per-token labels).
 * AdamW + cosine schedule by ./trainer.ts; logits and accuracy of classifiers by a forward graph.
 * Pure of Temporal: the `finetune`, `moe_finetune`, `retrain` and `benchmark` stages call it.
 */
import { ConfigError, DataError } from '../errors.ts';
import * as M from '../models/index.ts';
import { createSession, type Session } from '../runtime/index.ts';
import type { ModelConfig } from '../weights/hf-config.ts';
import type { ParamMap, ShapeMap } from './checkpoint.ts';
import { lmObjective, paramsToWeights } from './lm.ts';
import { train, type EvalInfo, type StepInfo } from './trainer.ts';
import { createRng } from '../data/random.ts';

/** What is trained on top of the frozen base: LoRA or LoRA-MoE adapters, and a classification head when `numLabels` is set. */
export interface ClassifierSpec {
  lora?: M.LoraSpec;
  moe?: M.MoeSpec;
  numLabels?: number;
}

/**
 * Trainable tensors: LoRA A/B (PEFT init, B = 0) or the MoE routers and experts (initMoe), and
 * score.weight ~ U(±0.02·√3) (std 0.02, HF's initializer_range) for a classifier.
 */
export function initClassifier(args: { config: ModelConfig; spec: ClassifierSpec; seed: number }): { params: ParamMap; shapes: ShapeMap } {
  const { config, spec, seed } = args;
  const params: ParamMap = new Map(), shapes: ShapeMap = new Map();
  const adapters = spec.lora ? M.loraToWeights(M.initLora({ config, lora: spec.lora, seed })) : spec.moe ? M.initMoe({ config, moe: spec.moe, seed }) : new Map();
  for (const [k, v] of adapters) {
    params.set(k, Float32Array.from(v.data));
    shapes.set(k, [...v.dims]);
  }
  if (spec.numLabels === undefined) return { params, shapes };
  const rng = createRng((seed ^ 0x5c0e) >>> 0);
  const D = config.hiddenSize, a = 0.02 * Math.sqrt(3);
  params.set('score.weight', Float32Array.from({ length: spec.numLabels * D }, () => (2 * rng.next() - 1) * a));
  shapes.set('score.weight', [spec.numLabels, D]);
  return { params, shapes };
}

export interface FineTuneArgs {
  config: ModelConfig;
  /** Frozen base weights. */
  base: M.WeightMap;
  spec: ClassifierSpec;
  train: M.Sample[];
  /** Model selection set: the checkpoint with the lowest loss here is kept (or the highest accuracy, see selectBy). */
  validation: M.Sample[];
  epochs: number;
  lr: number;
  batchSize: number;
  microBatchSize: number;
  warmupRatio: number;
  weightDecay: number;
  seed: number;
  padId: number;
  device: string;
  threads?: number;
  /** 'loss' (NDR: lowest influence-set loss) or 'accuracy' (retraining: best evaluation accuracy). */
  selectBy?: 'loss' | 'accuracy';
  /**
   * Accuracy of given params on the selection set (selectBy 'accuracy'); default: the classifier's
   * argmax over its head on `validation` (multiple-choice models pass their own, by option log-likelihood).
   */
  accuracyOf?(params: ParamMap, shapes: ShapeMap): Promise<number>;
  checkpointDir?: string;
  signal?: AbortSignal;
  onStep?(info: StepInfo): void;
  onEpoch?(info: { epoch: number; trainLoss: number; valLoss: number; valAccuracy?: number }): void;
}

export interface FineTuneResult {
  params: ParamMap;
  shapes: ShapeMap;
  bestEpoch: number;
  bestValLoss: number;
  bestValAccuracy?: number;
  stepLosses: number[];
  epochs: Array<{ epoch: number; trainLoss: number; valLoss: number; valAccuracy?: number }>;
  steps: number;
}

export async function fineTuneClassifier(a: FineTuneArgs): Promise<FineTuneResult> {
  if (!Number.isInteger(a.batchSize) || !Number.isInteger(a.microBatchSize) || a.batchSize % a.microBatchSize !== 0)
    throw new ConfigError(`fine-tuning: batchSize ${a.batchSize} must be a multiple of microBatchSize ${a.microBatchSize}`);
  if (a.train.length === 0 || a.validation.length === 0) throw new DataError(`fine-tuning: ${a.train.length} training and ${a.validation.length} validation samples; expected at least one of each`);
  const { params, shapes } = initClassifier({ config: a.config, spec: a.spec, seed: a.seed });
  if (a.selectBy === 'accuracy' && a.spec.numLabels === undefined && !a.accuracyOf) throw new ConfigError('fine-tuning: selection by accuracy needs a classifier (numLabels) or accuracyOf');
  const graph = M.buildTrainGraph({ config: a.config, lora: a.spec.lora, moe: a.spec.moe, numLabels: a.spec.numLabels });
  const objective = await lmObjective({ graph, frozen: a.base, device: a.device, threads: a.threads, weighting: 'examples', padId: a.padId });
  const predictor = a.selectBy === 'accuracy' && !a.accuracyOf ? await ClassifierPredictor.create({ config: a.config, spec: a.spec, device: a.device, threads: a.threads }) : undefined;
  const accuracyOf = a.selectBy !== 'accuracy' ? undefined : a.accuracyOf ?? (async (p: ParamMap) => {
    const logits = await predictor!.logits({ base: a.base, params: p, shapes, samples: a.validation, batchSize: a.microBatchSize, padId: a.padId });
    return accuracy(logits, a.validation.map((x) => x.label!), a.spec.numLabels!);
  });
  try {
    // Selection and history come from the trainer, which keeps both in its checkpoints: a run resumed
    // after a crash reports every epoch and picks the same checkpoint as an undisturbed one.
    const r = await train({
      objective, params, shapes, train: a.train, validation: a.validation,
      epochs: a.epochs, microBatchSize: a.microBatchSize, gradAccumulation: a.batchSize / a.microBatchSize,
      lr: a.lr, warmupRatio: a.warmupRatio, adamw: { weightDecay: a.weightDecay }, seed: a.seed,
      evalBatchSize: a.microBatchSize, checkpointDir: a.checkpointDir, signal: a.signal,
      onStep: a.onStep,
      selectScore: accuracyOf ? (e) => accuracyOf(e.params, shapes) : undefined,
      onEval: (e: EvalInfo) => a.onEpoch?.({ epoch: e.epoch, trainLoss: e.trainLoss, valLoss: e.valLoss!, valAccuracy: e.score }),
    });
    if (!r.best) throw new DataError('fine-tuning: no validation result');
    const epochs: FineTuneResult['epochs'] = r.history.map((h) => ({ epoch: h.epoch, trainLoss: h.trainLoss, valLoss: h.valLoss!, valAccuracy: h.score }));
    return { params: r.best.params, shapes, bestEpoch: r.best.epoch, bestValLoss: r.best.valLoss, bestValAccuracy: r.best.score, stepLosses: r.stepLosses, epochs, steps: r.steps };
  } finally {
    await objective.release();
    await predictor?.release();
  }
}

/** Forward graph of the classifier: logits [n × C] for base + adapter + head. */
export class ClassifierPredictor {
  private constructor(private readonly graph: M.GraphSpec, private readonly session: Session, readonly numLabels: number) {}

  static async create(a: { config: ModelConfig; spec: ClassifierSpec; device: string; threads?: number }): Promise<ClassifierPredictor> {
    if (a.spec.numLabels === undefined) throw new ConfigError('ClassifierPredictor: the adapter has no classification head (numLabels)');
    const graph = M.buildForwardGraph({ config: a.config, lora: a.spec.lora, numLabels: a.spec.numLabels });
    return new ClassifierPredictor(graph, await createSession({ model: graph.model, device: a.device, threads: a.threads }), a.spec.numLabels);
  }

  async logits(a: { base: M.WeightMap; params: ParamMap; shapes: ShapeMap; samples: M.Sample[]; batchSize: number; padId: number }): Promise<Float32Array> {
    const weights = paramsToWeights(a.params, a.shapes, new Map(a.base));
    const C = this.numLabels, out = new Float32Array(a.samples.length * C);
    for (let i = 0; i < a.samples.length; i += a.batchSize) {
      const chunk = a.samples.slice(i, i + a.batchSize).map((s) => ({ inputIds: s.inputIds }));
      const r = await this.session.run(M.feedsFor(this.graph, weights, M.padBatch(chunk, { padId: a.padId })), ['logits']);
      out.set(r.logits.data as Float32Array, i * C);
    }
    for (let i = 0; i < out.length; i++) if (!Number.isFinite(out[i])) throw new DataError(`classifier logits: sample ${Math.floor(i / C)} has a non-finite logit ${out[i]}`);
    return out;
  }

  release(): Promise<void> { return this.session.release(); }
}

/** Predicted class per sample (argmax; ties → lowest class). */
export function predictions(logits: ArrayLike<number>, numLabels: number): number[] {
  const n = logits.length / numLabels, out: number[] = [];
  for (let i = 0; i < n; i++) {
    let b = 0;
    for (let c = 1; c < numLabels; c++) if (logits[i * numLabels + c] > logits[i * numLabels + b]) b = c;
    out.push(b);
  }
  return out;
}

export function accuracy(logits: ArrayLike<number>, labels: number[], numLabels: number): number {
  const p = predictions(logits, numLabels);
  if (p.length !== labels.length) throw new DataError(`accuracy: ${p.length} predictions for ${labels.length} labels`);
  return p.filter((x, i) => x === labels[i]).length / labels.length;
}
