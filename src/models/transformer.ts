/**
 * Decoder-only transformers from a ModelConfig, HF parameter names:
 * - Llama family (llama, mistral, qwen2): RMSNorm, RoPE (rope_theta, linear/llama3 scaling), SwiGLU,
 *   grouped-query attention, causal (+ sliding-window) mask, tied or untied lm_head.
 * - GPT-2: LayerNorm, learned positions, Conv1D weights [in, out], tanh-GELU, tied lm_head.
 * - Gemma 3 (gemma3_text; transformers Gemma3ForCausalLM / Gemma3TextModel): embeddings × √hidden
 *   (rounded to float32 as HF does), RMSNorm with (1 + w) weights, per-head q_norm / k_norm before
 *   RoPE, four norms per block (input, post-attention on the attention output, pre- and
 *   post-feed-forward), gated tanh-GELU MLP, scores × query_pre_attn_scalar^-0.5, and per layer
 *   type: sliding_attention = window `slidingWindow` + RoPE base rope_local_base_freq,
 *   full_attention = no window + rope_theta (+ its linear scaling); tied lm_head, no soft-capping.
 * Inputs input_ids / attention_mask are int64 [B, T] (right padding; positions are 0..T-1 as in
 * HF's forward without position_ids).
 */
import { ConfigError } from '../errors.ts';
import * as O from '../onnx/index.ts';
import type { Value } from '../onnx/index.ts';
import type { ModelContext } from './context.ts';
import { blockModules } from './lora.ts';
import { activation, arange, attention, attentionBias, gemmaRmsNorm, layerNorm, rmsNorm, ropeInvFreq, ropeTables } from './ops.ts';

export interface TransformerOut {
  /** Input embeddings [B, T, D] (differentiate w.r.t. this for per-token embedding-row gradients). */
  embeds: Value;
  /** Final normalised hidden states [B, T, D]. */
  hidden: Value;
}

/** Declares input_ids and attention_mask ['batch', 'seq'] int64 and runs the blocks. */
export function transformer(ctx: ModelContext): TransformerOut & { inputIds: Value; attentionMask: Value } {
  const { g, config: c } = ctx;
  const inputIds = g.input('input_ids', 'int64', ['batch', 'seq']);
  const attentionMask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const shape = O.shapeOf(inputIds);
  ctx.batchDim = O.slice(shape, { starts: [0], ends: [1] });
  ctx.tokenMask = O.unsqueeze(O.cast(attentionMask, ctx.dtype), [-1]);
  const pos = arange(O.gather(shape, g.constant(1, 'int64')));
  const D = c.hiddenSize;
  if (ctx.isPerExample(embedName(ctx))) throw new ConfigError('per-example gradients of the whole embedding matrix are not supported; use the embedding-rows unit');
  if (c.modelType === 'gemma3_text') return { inputIds, attentionMask, ...gemma3(ctx, inputIds, attentionMask, pos) };
  const bias = attentionBias(pos, attentionMask, ctx.dtype, c.slidingWindow);

  if (c.modelType === 'gpt2') {
    const wte = ctx.param('transformer.wte.weight', [c.vocabSize, D]), wpe = ctx.param('transformer.wpe.weight', [c.maxPositions, D]);
    const embeds = O.gather(wte, inputIds);
    let x = O.add(embeds, O.gather(wpe, pos));
    for (let l = 0; l < c.numLayers; l++) {
      const p = `transformer.h.${l}`, [cAttn, cProj, cFc, mProj] = blockModules(c, l);
      const ln = (n: string, v: Value) => layerNorm(v, ctx.param(`${p}.${n}.weight`, [D]), ctx.param(`${p}.${n}.bias`, [D]), c.normEps);
      const [q, k, v] = O.split(ctx.linear(ln('ln_1', x), cAttn), [D, D, D], -1);
      x = O.add(x, ctx.linear(attention({ q, k, v, heads: c.numHeads, kvHeads: c.numHeads, headDim: c.headDim, bias }), cProj));
      x = O.add(x, ctx.linear(activation(c.hiddenAct, ctx.linear(ln('ln_2', x), cFc)), mProj));
    }
    const hidden = layerNorm(x, ctx.param('transformer.ln_f.weight', [D]), ctx.param('transformer.ln_f.bias', [D]), c.normEps);
    return { inputIds, attentionMask, embeds, hidden };
  }

  const rope = ropeTables(pos, ropeInvFreq(c.headDim, c.ropeTheta ?? 10000, c.ropeScaling), ctx.dtype);
  const embeds = O.gather(ctx.param('model.embed_tokens.weight', [c.vocabSize, D]), inputIds);
  let x = embeds;
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`, [qP, kP, vP, oP, gateP, upP, downP] = blockModules(c, l);
    const n1 = rmsNorm(x, ctx.param(`${p}.input_layernorm.weight`, [D]), c.normEps);
    const a = attention({ q: ctx.linear(n1, qP), k: ctx.linear(n1, kP), v: ctx.linear(n1, vP), heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, bias, rope });
    x = O.add(x, ctx.linear(a, oP));
    const n2 = rmsNorm(x, ctx.param(`${p}.post_attention_layernorm.weight`, [D]), c.normEps);
    x = O.add(x, ctx.linear(O.mul(activation(c.hiddenAct, ctx.linear(n2, gateP)), ctx.linear(n2, upP)), downP));
  }
  const hidden = rmsNorm(x, ctx.param('model.norm.weight', [D]), c.normEps);
  return { inputIds, attentionMask, embeds, hidden };
}

/** Gemma 3 blocks (see the header); `embeds` are the unscaled embedding rows, so their gradient is the rows' gradient. */
function gemma3(ctx: ModelContext, inputIds: Value, attentionMask: Value, pos: Value): TransformerOut {
  const { config: c } = ctx, gm = c.gemma3;
  if (!gm) throw new ConfigError('a gemma3_text config needs its Gemma 3 fields (layer types, local rope base, query_pre_attn_scalar, embedding scale)');
  if (gm.layerTypes.length !== c.numLayers) throw new ConfigError(`gemma3: ${gm.layerTypes.length} layer types for ${c.numLayers} layers`);
  const D = c.hiddenSize, dh = c.headDim;
  // Built on first use: a model whose layers are all of one type needs one table and one mask.
  const byType = new Map<string, { rope: { cos: Value; sin: Value }; bias: Value }>();
  const kind = (t: string) => {
    let k = byType.get(t);
    if (!k) {
      const local = t === 'sliding_attention';
      const inv = local ? ropeInvFreq(dh, gm.ropeLocalBaseFreq, null) : ropeInvFreq(dh, c.ropeTheta ?? 1e6, c.ropeScaling);
      k = { rope: ropeTables(pos, inv, ctx.dtype), bias: attentionBias(pos, attentionMask, ctx.dtype, local ? c.slidingWindow : null) };
      byType.set(t, k);
    }
    return k;
  };
  const norm = (x: Value, name: string, n = D) => gemmaRmsNorm(x, ctx.param(name, [n]), c.normEps);
  const embeds = O.gather(ctx.param('model.embed_tokens.weight', [c.vocabSize, D]), inputIds);
  let x = O.mul(embeds, ctx.scalar(Math.fround(gm.embedScale)));
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`, [qP, kP, vP, oP, gateP, upP, downP] = blockModules(c, l);
    const { rope, bias } = kind(gm.layerTypes[l]);
    const n1 = norm(x, `${p}.input_layernorm.weight`);
    const a = attention({
      q: ctx.linear(n1, qP), k: ctx.linear(n1, kP), v: ctx.linear(n1, vP), heads: c.numHeads, kvHeads: c.numKvHeads, headDim: dh, bias, rope,
      normQ: (q) => norm(q, `${p}.self_attn.q_norm.weight`, dh), normK: (k) => norm(k, `${p}.self_attn.k_norm.weight`, dh),
      scale: gm.queryPreAttnScalar ** -0.5,
    });
    x = O.add(x, norm(ctx.linear(a, oP), `${p}.post_attention_layernorm.weight`));
    const n2 = norm(x, `${p}.pre_feedforward_layernorm.weight`);
    const mlp = ctx.linear(O.mul(activation(c.hiddenAct, ctx.linear(n2, gateP)), ctx.linear(n2, upP)), downP);
    x = O.add(x, norm(mlp, `${p}.post_feedforward_layernorm.weight`));
  }
  return { embeds, hidden: norm(x, 'model.norm.weight') };
}

export const embedName = (ctx: ModelContext): string => (ctx.config.modelType === 'gpt2' ? 'transformer.wte.weight' : 'model.embed_tokens.weight');
/** Name of the output projection weight [V, D]: the embedding when tied. */
export const lmHeadName = (ctx: ModelContext): string => (ctx.config.tieWordEmbeddings ? embedName(ctx) : 'lm_head.weight');

/** logits [B, T, V] = hidden · lm_headᵀ. */
export function lmHead(ctx: ModelContext, hidden: Value): Value {
  const c = ctx.config;
  return O.matMul(hidden, O.transposeLast2(ctx.param(lmHeadName(ctx), [c.vocabSize, c.hiddenSize])));
}

/**
 * Sequence classification (HF *ForSequenceClassification): the hidden state of the last
 * non-padding token (index Σ attention_mask − 1, right padding) → score.weight [numLabels, D], no bias.
 * Returns logits [B, numLabels].
 */
export function classificationHead(ctx: ModelContext, hidden: Value, attentionMask: Value, numLabels: number): Value {
  const D = ctx.config.hiddenSize;
  const last = O.sub(O.reduceSum(attentionMask, [1]), ctx.g.constant(1, 'int64')); // [B, 1]
  const idx = O.expand(O.unsqueeze(last, [-1]), O.concat([ctx.batchDim, ctx.g.ints([1, D])], 0)); // [B, 1, D]
  const pooled = O.gatherElements(hidden, idx, 1); // [B, 1, D]
  const W = ctx.param('score.weight', [numLabels, D]);
  return O.reshape(O.matMul(pooled, O.transposeLast2(W)), [0, numLabels]);
}
