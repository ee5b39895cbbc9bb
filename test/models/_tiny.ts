/** Tiny random configs, weights and batches for the model tests. */
import * as M from '../../src/models/index.ts';
import { parseHfConfig, type ModelConfig } from '../../src/weights/hf-config.ts';

export const tinyLlama = (extra: Record<string, unknown> = {}): ModelConfig => parseHfConfig({
  model_type: 'llama', hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  intermediate_size: 12, vocab_size: 11, rope_theta: 500, ...extra,
});
export const tinyGpt2 = (extra: Record<string, unknown> = {}): ModelConfig => parseHfConfig({
  model_type: 'gpt2', n_embd: 8, n_layer: 2, n_head: 2, vocab_size: 11, n_positions: 16, ...extra,
});

/** Gemma 3 with a sliding layer (window 2, shorter than the batch's sequences) then a global one, GQA, q/k norms. */
export const tinyGemma3 = (extra: Record<string, unknown> = {}): ModelConfig => parseHfConfig({
  model_type: 'gemma3_text', hidden_size: 8, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 4,
  intermediate_size: 12, vocab_size: 11, layer_types: ['sliding_attention', 'full_attention'], sliding_window: 2,
  query_pre_attn_scalar: 6, rope_theta: 700, rope_local_base_freq: 50, ...extra,
});

/** Random base weights + LoRA (non-zero B) + optional extras, keyed by graph input names. */
export function tinyWeights(spec: { weightInputs: { name: string; shape: number[] }[] }, seed = 1, scale = 0.5): M.WeightMap {
  return M.randomWeights(spec.weightInputs, seed, scale);
}

/** Three right-padded samples of different lengths, prompt tokens masked. */
export function tinyBatch(cls = false): M.Batch {
  const samples: M.Sample[] = [
    { inputIds: [3, 1, 4, 1, 5, 9], labels: [-100, -100, 4, 1, 5, 9], label: 1 },
    { inputIds: [2, 7, 10], labels: [-100, 7, 10], label: 0 },
    { inputIds: [6, 5, 3, 5, 8], labels: [-100, -100, -100, 5, 8], label: 1 },
  ];
  return M.padBatch(cls ? samples : samples.map(({ label: _l, ...s }) => s), { padId: 0 });
}

/** Row b of a batch, trimmed to its real tokens (batch-of-one). */
export function row(batch: M.Batch, b: number): M.Batch {
  const T = batch.seq;
  let n = 0;
  while (n < T && batch.attentionMask[b * T + n] === 1n) n++;
  const cls = batch.labels!.length === batch.batch;
  return {
    batch: 1, seq: n, inputIds: batch.inputIds.slice(b * T, b * T + n), attentionMask: batch.attentionMask.slice(b * T, b * T + n),
    labels: cls ? batch.labels!.slice(b, b + 1) : batch.labels!.slice(b * T, b * T + n),
  };
}

export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0, worst = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst / (scale + 1e-300);
}
