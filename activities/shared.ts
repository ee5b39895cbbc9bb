/**
 * What the NDR stages share: resolving a model entry (a packaged model or a path), loading it once
 * per worker process, the classifier record the fine-tuning stage writes, and sample encoding.
 */
import { z } from 'zod';
import { ConfigError } from '../src/errors.ts';
import { defaultModelPath, loadModel, MODEL_TERMS, PRETRAINED_MODELS, type LoadedModel, type PretrainedModel } from '../src/models/load.ts';
import type * as M from '../src/models/index.ts';
import type { ArtifactRef, ArtifactStore } from '../src/store/artifacts.ts';
import type { StageContext } from '../src/store/stage-context.ts';
import type { ClassificationExample } from '../src/data/types.ts';
import { parseSafetensorsBytes, rawToFloat32, serializeSafetensors, type TensorInput } from '../src/weights/safetensors.ts';
import { peftConfigJson } from '../src/weights/peft.ts';
import { peftConfig } from '../src/models/lora.ts';
import type { ParamMap, ShapeMap } from '../src/train/checkpoint.ts';
import type { ClassifierSpec } from '../src/train/classifier.ts';
import type { ChoiceDoc } from '../src/eval/bigbench.ts';
import { encodeRequest, LoglikelihoodScorer, scoreChoiceDocs } from '../src/eval/loglikelihood.ts';
import { DEFAULT_MAX_NEW_TOKENS, generateAnswers } from '../src/eval/generate.ts';
import { IGNORE_INDEX } from '../src/models/loss.ts';

/** A `models[]` entry of an NDR / LayerIF sweep: a packaged model, or a path (HF folder or .gguf) relative to the sweep file. */
export const ModelEntry = z.object({
  /** A model the install step fetches (infra/fetch-models.sh) into <home>/models/. */
  source: z.enum(Object.keys(PRETRAINED_MODELS) as [PretrainedModel]).optional(),
  path: z.string().min(1).optional(),
});
type Resolved = { id: string; source?: PretrainedModel; path?: string | { path: string; sha256: string } };

export function modelPath(home: string, m: Resolved): string {
  if (m.source && m.path) throw new ConfigError(`model ${m.id}: give either source or path, not both`);
  if (m.source) return defaultModelPath(home, m.source);
  if (typeof m.path === 'string') return m.path;
  if (m.path) return m.path.path;
  throw new ConfigError(`model ${m.id}: expected source (one of ${Object.keys(PRETRAINED_MODELS).join(', ')}) or path (an HF model folder or a .gguf file)`);
}

let cached: { path: string; model: Promise<LoadedModel> } | undefined;
const termsTold = new Set<string>();

/** The cell's model, loaded once per worker process (GGUF dequantisation takes seconds). */
export function modelOf(ctx: StageContext<unknown>): Promise<LoadedModel> {
  const m = ctx.slice.model as Resolved;
  const path = modelPath(ctx.home, m);
  if (cached?.path !== path) {
    const terms = m.source && MODEL_TERMS[m.source];
    if (terms && !termsTold.has(m.source!)) {
      termsTold.add(m.source!);
      console.warn(`layerflow: ${terms}`);
    }
    cached = { path, model: loadModel({ id: m.id, path }) };
    cached.model.catch(() => { cached = undefined; });
  }
  return cached.model;
}

/**
 * What `finetune` records about the adapter; every later stage builds the same model from it.
 * `classifier`: LoRA + classification head on labelled texts (NDR); `answer-lm`: LoRA trained as a
 * causal LM on the gold option's tokens after the context (multiple-choice tasks, LayerIF).
 */
export interface ClassifierRecord {
  objective: 'classifier' | 'answer-lm';
  spec: ClassifierSpec;
  maxLength: number;
  padId: number;
  labelNames: string[];
  train: { epochs: number; lr: number; batchSize: number; microBatchSize: number; warmupRatio: number; weightDecay: number };
}

/**
 * One multiple-choice document → an answer-token training sample: context + gold option tokenised
 * exactly as the log-likelihood scorer reads them (lm-evaluation-harness encoding, `delimiter`
 * before the bare option), the loss on the option's tokens only, the context cut from the left to
 * fit maxLength. A generative document's only option is its first target, so it trains on that
 * answer followed by the tokenizer's EOS (when it has one): greedy generation (src/eval/generate.ts)
 * reads the prompt with the same encoding and stops at EOS, so a fine-tuned model learns where its
 * answer ends instead of running on past it.
 */
export function encodeAnswer(tok: LoadedModel['tokenizer'], d: ChoiceDoc, maxLength: number, delimiter = ''): M.Sample {
  const { contextIds, continuationIds } = encodeRequest(tok, { context: d.context, continuation: delimiter + d.options[d.gold[0]] });
  const end = d.generative && tok.eosId !== null ? [tok.eosId] : [];
  const answer = [...continuationIds, ...end].slice(0, Math.max(1, maxLength - 1));
  const context = contextIds.slice(Math.max(0, contextIds.length - (maxLength - answer.length)));
  return { inputIds: [...context, ...answer], labels: [...context.map(() => IGNORE_INDEX), ...answer] };
}

/**
 * The option each document's model picks (argmax of option log-likelihoods, lm-evaluation-harness
 * style) for base + a LoRA adapter: the multiple-choice counterpart of a classifier's predictions.
 * A generative document (one option, its first target) is answered by greedy generation instead
 * (src/eval/generate.ts, at most min(32, maxLength / 2) new tokens): 0 when the answer exactly
 * matches a target (BIG-bench exact_str_match), −1 otherwise — so `gold.includes(prediction)` is
 * its exact match wherever callers count correct predictions.
 */
export async function choicePredictions(a: {
  model: LoadedModel; rec: ClassifierRecord; params: ParamMap; shapes: ShapeMap; docs: ChoiceDoc[]; device: string; delimiter?: string;
  signal?: AbortSignal;
  /** Called as documents finish: `done` of `total` (= docs.length). */
  onProgress?: (done: number, total: number) => void;
}): Promise<number[]> {
  const weights: M.WeightMap = new Map(a.model.weights);
  for (const [k, v] of a.params) weights.set(k, { dims: a.shapes.get(k)!, data: v });
  const maxLength = Math.max(a.rec.maxLength, 8);
  const scorer = await LoglikelihoodScorer.create({ config: a.model.config, weights, lora: a.rec.spec.lora, moe: a.rec.spec.moe, tokenizer: a.model.tokenizer, device: a.device, batchSize: a.rec.train.microBatchSize, maxLength });
  try {
    const gen = a.docs.flatMap((d, i) => (d.generative ? [i] : []));
    const choice = a.docs.flatMap((d, i) => (d.generative ? [] : [i]));
    const out = new Array<number>(a.docs.length);
    // Scored a few documents at a time, so progress can be reported between them.
    const CHUNK = 8;
    for (let s = 0; s < choice.length; s += CHUNK) {
      a.signal?.throwIfAborted();
      const part = choice.slice(s, s + CHUNK);
      const lls = await scoreChoiceDocs(scorer, part.map((i) => a.docs[i]), { delimiter: a.delimiter ?? '' });
      lls.forEach((l, k) => { out[part[k]] = l.indexOf(Math.max(...l)); });
      a.onProgress?.(s + part.length, a.docs.length);
    }
    if (gen.length) {
      const r = await generateAnswers(scorer, gen.map((i) => a.docs[i]), {
        maxNewTokens: Math.min(DEFAULT_MAX_NEW_TOKENS, Math.floor(maxLength / 2)),
        signal: a.signal,
        onProgress: a.onProgress && ((done) => a.onProgress!(choice.length + done, a.docs.length)),
      });
      r.docs.forEach((d, k) => { out[gen[k]] = d.match ? 0 : -1; });
    }
    return out;
  } finally {
    await scorer.release();
  }
}

/** A training / influence example of either task form → model input. */
export function encodeFor(tok: LoadedModel['tokenizer'], rec: ClassifierRecord, e: { text: string; label: number } | ChoiceDoc): M.Sample {
  return rec.objective === 'classifier' ? encodeExample(tok, e as { text: string; label: number }, rec.maxLength) : encodeAnswer(tok, e as ChoiceDoc, rec.maxLength);
}

/** One classification example → model input: whitespace collapsed, at most maxLength tokens. */
export function encodeExample(tok: LoadedModel['tokenizer'], e: { text: string; label: number }, maxLength: number): M.Sample {
  const text = e.text.replace(/\s+/g, ' ').trim().slice(0, maxLength * 12);
  const ids = tok.encode(text.length ? text : ' ').slice(0, maxLength);
  return { inputIds: ids, label: e.label };
}

/** Adapter files (PEFT layout; score.weight as PEFT's modules_to_save) of trained classifier params. */
export function adapterFiles(rec: ClassifierRecord, params: ParamMap, shapes: ShapeMap, base: string): Record<string, string | Uint8Array> {
  const tensors: Record<string, TensorInput> = {};
  for (const [k, v] of params) tensors[k === 'score.weight' ? 'base_model.model.score.modules_to_save.weight' : k] = { dtype: 'F32', shape: shapes.get(k)!, values: v };
  const spec = rec.spec;
  const lora = spec.lora ?? (spec.moe ? { r: spec.moe.r, alpha: spec.moe.alpha, targets: spec.moe.targets } : undefined);
  if (!lora) throw new ConfigError('adapterFiles: the record has neither LoRA nor MoE adapters');
  const cls = spec.numLabels !== undefined;
  const config = {
    ...peftConfigJson(peftConfig(lora, { base, taskType: cls ? 'SEQ_CLS' : 'CAUSAL_LM' })),
    ...(cls ? { modules_to_save: ['score'] } : {}),
    // LoRA-MoE (MoLA-style) is not a PEFT type: its layout is recorded here (router/lora_A/lora_B per module).
    ...(spec.moe ? { layerflow_moe: { experts: spec.moe.experts, top_k: spec.moe.topK ?? 2 } } : {}),
  };
  return { 'adapter_config.json': JSON.stringify(config, null, 1), 'adapter_model.safetensors': serializeSafetensors(tensors, { format: 'pt' }) };
}

/** Trained classifier params back from an adapter artifact. */
export async function readAdapter(store: ArtifactStore, ref: ArtifactRef): Promise<{ params: ParamMap; shapes: ShapeMap }> {
  const { tensors } = parseSafetensorsBytes(await store.read(ref, 'adapter_model.safetensors'), `${ref.stage}/adapter_model.safetensors`);
  const params: ParamMap = new Map(), shapes: ShapeMap = new Map();
  for (const [k, t] of tensors) {
    const name = k === 'base_model.model.score.modules_to_save.weight' ? 'score.weight' : k;
    params.set(name, rawToFloat32(t, k));
    shapes.set(name, t.shape);
  }
  return { params, shapes };
}

/**
 * The `data` stage's artifact for a multiple-choice or generative task (BIG-bench or choice JSONL).
 * Generative tasks (`generative: true`) have documents with one option (the first target, the
 * training answer), gold [0] and every target in `targets` (src/eval/bigbench.ts ChoiceDoc).
 */
export interface ChoiceDataset {
  kind: 'choice';
  task: string;
  /** Present (true) for a generative task: the benchmark generates and scores exact match. */
  generative?: true;
  /** Train documents; a noisy one has `gold` replaced by a wrong option and keeps the true one in `cleanGold`. */
  train: Array<ChoiceDoc & { cleanGold?: number[] }>;
  /** LayerIF's IF-validation set (influence is measured against it). */
  influence: ChoiceDoc[];
  /** Held-out test documents (the benchmark). */
  evaluation: ChoiceDoc[];
  noisyIds: number[];
  noise: number;
  duplicatesRemoved: number;
}

export type TaskDataset = NdrDataset | ChoiceDataset;

/** The `data` stage's artifact for a classification task. */
export interface NdrDataset {
  kind?: 'classification';
  task: string;
  numClasses: number;
  labelNames: string[];
  /** Train examples carry the noisy label; `cleanLabel` is the original. */
  train: Array<ClassificationExample & { cleanLabel: number }>;
  influence: ClassificationExample[];
  evaluation: ClassificationExample[];
  /** Positions in `train` whose label was flipped. */
  noisyIds: number[];
  noise: number;
  duplicatesRemoved: number;
}

/**
 * The fine-tuning recipe and adapter shape shared by `finetune`, `retrain` and `moe_finetune`
 * (SCIENCE.md §4: AdamW, cosine schedule with 10% warmup); each stage sets its own defaults.
 */
export function adapterTrainingSettings(d: { epochs: number; batchSize: number; rank: number; alpha: number }) {
  return {
    epochs: z.number().int().min(1).default(d.epochs),
    lr: z.number().positive().default(1e-3),
    batchSize: z.number().int().min(1).default(d.batchSize),
    microBatchSize: z.number().int().min(1).default(8),
    warmupRatio: z.number().min(0).max(1).default(0.1),
    weightDecay: z.number().min(0).default(0),
    rank: z.number().int().min(1).default(d.rank),
    alpha: z.number().positive().default(d.alpha),
    targets: z.array(z.string()).min(1).default(['q_proj', 'v_proj']),
    /** Tokens per sample (longer inputs are cut; multiple-choice contexts from the left). */
    maxLength: z.number().int().min(4).default(128),
  };
}
