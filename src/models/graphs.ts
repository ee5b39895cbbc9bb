/**
 * Whole graphs from a ModelConfig: forward (logits, per-sample loss), per-example gradients and
 * training (batch loss + gradients of the trainable tensors).
 *
 * The per-example and training graphs of a causal LM compute its loss at the target positions only
 * (loss.ts causalLmLossAtTargets): no [B, T, V] logits, which for Gemma 3's 262,144-token vocabulary
 * would be 1 GiB per 1,024 tokens (and three such tensors with the backward pass).
 *
 * Graph inputs: input_ids, attention_mask int64 ['batch','seq']; labels int64 ['batch','seq']
 * (causal LM, -100 = ignore) or ['batch'] (classification); then every weight by its HF / PEFT name
 * (see GraphSpec.weightInputs) unless baked in through `initializers`.
 */
import { grad } from '../autodiff/index.ts';
import { ConfigError } from '../errors.ts';
import * as O from '../onnx/index.ts';
import { GraphBuilder, type Value } from '../onnx/index.ts';
import type { ModelConfig } from '../weights/hf-config.ts';
import { ModelContext, type ContextOptions, type FloatDType, type WeightMap } from './context.ts';
import { causalLmLoss, causalLmLossAtTargets, classificationLoss } from './loss.ts';
import { allModules, loraUnits, type LoraSpec } from './lora.ts';
import { moeUnits, type MoeSpec } from './moe.ts';
import { classificationHead, lmHead, lmHeadName, transformer } from './transformer.ts';

export interface ModelOptions {
  config: ModelConfig;
  lora?: LoraSpec;
  moe?: MoeSpec;
  /** Sequence classification head with this many labels (score.weight); default: causal LM head. */
  numLabels?: number;
  dtype?: FloatDType;
  initializers?: WeightMap;
  /** Add outputs `act_sumsq.<module>` [in]: Σ over real tokens of x² per input feature (Wanda: ‖X_j‖₂ = √sum). */
  activationNorms?: boolean;
}

export interface GraphSpec {
  model: Uint8Array;
  /** Weight inputs to feed (name → shape), in graph order. */
  weightInputs: { name: string; shape: number[] }[];
  /** Data inputs: input_ids, attention_mask (+ labels). */
  dataInputs: string[];
  outputNames: string[];
  dtype: FloatDType;
}

interface Built { ctx: ModelContext; logits?: Value; perSample?: Value; tokens?: Value; embeds: Value; labels?: Value }

/**
 * The model, its head and (withLoss) the per-sample loss. Without `withLogits` a causal LM's loss is
 * computed at the target positions only (causalLmLossAtTargets) and no [B, T, V] logits are made.
 */
function build(g: GraphBuilder, o: ModelOptions, extra: Pick<ContextOptions, 'perExample'>, withLoss: boolean, withLogits = true): Built {
  if (o.lora && o.moe) throw new ConfigError('a model takes either lora or moe adapters, not both');
  const ctx = new ModelContext(g, { ...o, ...extra });
  const t = transformer(ctx);
  if (o.numLabels !== undefined) {
    if (!Number.isInteger(o.numLabels) || o.numLabels < 2) throw new ConfigError(`numLabels is ${o.numLabels}; expected an integer >= 2`);
    const logits = classificationHead(ctx, t.hidden, t.attentionMask, o.numLabels);
    if (!withLoss) return { ctx, logits, embeds: t.embeds };
    const labels = g.input('labels', 'int64', ['batch']);
    return { ctx, logits, embeds: t.embeds, labels, perSample: classificationLoss(logits, labels) };
  }
  const labels = withLoss ? g.input('labels', 'int64', ['batch', 'seq']) : undefined;
  if (!withLogits && labels) {
    // A frozen head (not a per-example unit) runs fused with its backward, chunked over target positions (loss.ts headCrossEntropy).
    const name = lmHeadName(ctx);
    const head = [...(extra.perExample ?? [])].includes(name) ? (h: Value) => lmHead(ctx, h) : { weight: ctx.param(name, [o.config.vocabSize, o.config.hiddenSize]) };
    return { ctx, embeds: t.embeds, labels, ...causalLmLossAtTargets(t.hidden, labels, head) };
  }
  const logits = lmHead(ctx, t.hidden);
  if (!labels) return { ctx, logits, embeds: t.embeds };
  const { perSample, tokens } = causalLmLoss(logits, labels);
  return { ctx, logits, embeds: t.embeds, labels, perSample, tokens };
}

function finish(g: GraphBuilder, b: Built, o: ModelOptions): GraphSpec {
  if (o.activationNorms) for (const [m, v] of b.ctx.actSumSq) g.output(v, `act_sumsq.${m}`);
  const weightInputs = [...b.ctx.params.values()].filter((v) => !g.initializers.has(v.name)).map((v) => ({ name: v.name, shape: v.shape as number[] }));
  const names = new Set(weightInputs.map((w) => w.name));
  return {
    model: g.toModel(), weightInputs, dtype: b.ctx.dtype,
    dataInputs: g.inputs.map((v) => v.name).filter((n) => !names.has(n)),
    outputNames: g.outputs.map((v) => v.name),
  };
}

/** Forward graph: outputs `logits` ([B, T, V] or [B, C]), and with `withLoss` `loss` [B] per sample (+ `moe_aux`). */
export function buildForwardGraph(o: ModelOptions & { withLoss?: boolean }): GraphSpec {
  const g = new GraphBuilder({ name: `${o.config.modelType}_forward` });
  const b = build(g, o, {}, o.withLoss ?? false);
  g.output(b.logits!, 'logits');
  if (b.perSample) g.output(b.perSample, 'loss');
  if (b.ctx.moeAux.length) g.output(sumAll(b.ctx.moeAux), 'moe_aux');
  return finish(g, b, o);
}

const sumAll = (vs: Value[]): Value => vs.reduce((a, v) => O.add(a, v));

/**
 * Which per-example gradients to compute. Unit names: PEFT keys for LoRA tensors
 * ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), HF weight names for whole
 * matrices ("model.layers.0.mlp.down_proj.weight", "score.weight", "lm_head.weight"), and
 * EMBEDDING_ROWS for the input-embedding rows of the sample's tokens.
 */
export interface PerExampleUnits {
  /** true: every LoRA A and B (default when lora is given); or a list of PEFT keys. */
  lora?: boolean | string[];
  /** Whole weight matrices by HF name (linear modules, score.weight, untied lm_head.weight). */
  weights?: string[];
  /** The classification head score.weight (same as listing it in weights). */
  head?: boolean;
  /** Gradient w.r.t. the input embedding of each position, [B, T, D] (see embeddingRowGrads). */
  embeddingRows?: boolean;
}
export const EMBEDDING_ROWS = 'embedding_rows';

export interface PerExampleGraph extends GraphSpec {
  /** unit → { output name, per-example shape (without the leading B) }; `loss` holds the [B] per-sample losses. */
  units: Map<string, { output: string; shape: number[] }>;
}

/**
 * One batched pass → per-example gradients [B, ...] of each sample's own loss, by differentiating the
 * summed per-sample losses w.r.t. batch-expanded copies of each selected parameter.
 */
export function buildPerExampleGradGraph(o: ModelOptions & { units?: PerExampleUnits }): PerExampleGraph {
  const { config: c, lora } = o;
  const u = o.units ?? { lora: true };
  const selected: string[] = [];
  if (u.lora) {
    if (!lora) throw new ConfigError('per-example units ask for LoRA gradients but no lora spec was given');
    const keys = loraUnits(c, lora).map((x) => x.key);
    if (Array.isArray(u.lora)) {
      for (const k of u.lora) if (!keys.includes(k)) throw new ConfigError(`per-example unit "${k}" is not a LoRA tensor of this model; e.g. ${keys[0]}`);
      selected.push(...u.lora);
    } else selected.push(...keys);
  }
  const allowed = new Set(allModules(c).map((m) => `${m.name}.weight`));
  if (o.numLabels !== undefined) allowed.add('score.weight');
  else if (!c.tieWordEmbeddings) allowed.add('lm_head.weight');
  for (const w of [...(u.weights ?? []), ...(u.head ? ['score.weight'] : [])]) {
    if (!allowed.has(w)) throw new ConfigError(`per-example unit "${w}" is not a supported weight matrix; expected a linear module weight, score.weight (classification) or an untied lm_head.weight`);
    if (!selected.includes(w)) selected.push(w);
  }
  if (!selected.length && !u.embeddingRows) throw new ConfigError('per-example gradients: no units selected');
  const g = new GraphBuilder({ name: `${c.modelType}_per_example_grad` });
  const b = build(g, o, { perExample: selected }, true, false);
  const wrt = selected.map((n) => b.ctx.expanded.get(n)!);
  if (u.embeddingRows) wrt.push(b.embeds);
  const grads = grad({ loss: O.reduceSum(b.perSample!, undefined, false), wrt });
  g.output(b.perSample!, 'loss');
  const units = new Map<string, { output: string; shape: number[] }>();
  selected.forEach((n, i) => {
    units.set(n, { output: `grad.${n}`, shape: b.ctx.params.get(n)!.shape as number[] });
    g.output(grads[i], `grad.${n}`);
  });
  if (u.embeddingRows) {
    units.set(EMBEDDING_ROWS, { output: `grad.${EMBEDDING_ROWS}`, shape: [-1, c.hiddenSize] });
    g.output(grads[grads.length - 1], `grad.${EMBEDDING_ROWS}`);
  }
  return { ...finish(g, b, o), units };
}

export interface TrainGraph extends GraphSpec {
  /** Trainable tensors (gradient output `grad.<name>`), in a stable order. */
  trainable: { name: string; shape: number[] }[];
}

/**
 * Training step graph: scalar `loss` and `grad.<name>` for every trainable tensor (LoRA A/B, or
 * the MoE routers and experts, plus score.weight for classification unless trainHead is false).
 * reduction 'sample-mean' averages the per-sample losses (batch-of-one semantics); 'token-mean'
 * averages over all target tokens of the batch (HF Trainer). moeAuxCoef adds the load-balancing
 * loss (default 0.001 when moe is given); `loss` includes it, `lm_loss` does not.
 */
export function buildTrainGraph(o: ModelOptions & { reduction?: 'sample-mean' | 'token-mean'; trainHead?: boolean; moeAuxCoef?: number }): TrainGraph {
  const c = o.config;
  const names: string[] = o.lora ? loraUnits(c, o.lora).map((x) => x.key) : o.moe ? moeUnits(c, o.moe).map((x) => x.key) : [];
  if (o.numLabels !== undefined && o.trainHead !== false) names.push('score.weight');
  if (!names.length) throw new ConfigError('training graph: nothing to train (give lora, moe or a classification head)');
  const g = new GraphBuilder({ name: `${c.modelType}_train` });
  const b = build(g, o, {}, true, false);
  let loss: Value;
  if ((o.reduction ?? 'sample-mean') === 'token-mean' && b.tokens) {
    const tok = b.tokens;
    loss = O.div(O.reduceSum(O.mul(b.perSample!, tok), undefined, false), O.reduceSum(tok, undefined, false));
  } else {
    loss = O.reduceMean(b.perSample!, undefined, false);
  }
  g.output(loss, 'lm_loss');
  const coef = o.moeAuxCoef ?? (o.moe ? 0.001 : 0);
  if (b.ctx.moeAux.length && coef) loss = O.add(loss, O.mul(sumAll(b.ctx.moeAux), coef));
  g.output(loss, 'loss');
  const params = names.map((n) => b.ctx.params.get(n)!);
  grad({ loss, wrt: params }).forEach((gv, i) => g.output(gv, `grad.${names[i]}`));
  return { ...finish(g, b, o), trainable: params.map((p) => ({ name: p.name, shape: p.shape as number[] })) };
}
