/**
 * What the router costs (issue 10's benchmark): one LoRA-MoE training step (MoLA-style experts on
 * q_proj and v_proj, top-2 of E experts of rank r per block, load-balancing loss) against a plain
 * LoRA step with the same total rank (E·r) on the same modules, same batch, same model, both as
 * LayerFlow ONNX training graphs (src/models buildTrainGraph) run by the trainer's objective.
 * Interleaved, median of BENCH_ITERS steps each; ratio MoE / LoRA from the same run.
 *
 *   npx tsx bench/moe-step.ts          # BENCH_MODEL [135m] (or tiny), BENCH_BATCH [8], BENCH_SEQ [64], BENCH_EXPERTS [4], BENCH_RANK [4], BENCH_ITERS [5]
 */
import { availableParallelism, cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import * as M from '../src/models/index.ts';
import { parseHfConfig } from '../src/weights/hf-config.ts';
import { lmObjective, weightsToParams } from '../src/train/lm.ts';
import { envInt } from './common.ts';

const SHAPES: Record<string, Record<string, unknown>> = {
  tiny: { hidden_size: 128, intermediate_size: 384, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, vocab_size: 512, tie_word_embeddings: true, max_position_embeddings: 2048 },
  '135m': { hidden_size: 576, intermediate_size: 1536, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, head_dim: 64, vocab_size: 49152, tie_word_embeddings: true, max_position_embeddings: 2048 },
};
const name = process.env.BENCH_MODEL ?? '135m';
const B = envInt('BENCH_BATCH', 8), T = envInt('BENCH_SEQ', 64), E = envInt('BENCH_EXPERTS', 4), r = envInt('BENCH_RANK', 4), ITERS = envInt('BENCH_ITERS', 5);
const config = parseHfConfig({ model_type: 'llama', ...SHAPES[name] }, `bench ${name}`);
const targets = ['q_proj', 'v_proj'];
const base = M.randomWeights(M.buildForwardGraph({ config }).weightInputs, 1, 0.05);
const samples: M.Sample[] = Array.from({ length: B }, (_, b) => ({ inputIds: Array.from({ length: T }, (_, t) => (b * 131 + t * 17) % config.vocabSize) }));

async function side(kind: 'lora' | 'moe') {
  const lora: M.LoraSpec = { r: E * r, alpha: 2 * E * r, targets };
  const moe: M.MoeSpec = { r, alpha: 2 * r, targets, experts: new Array(config.numLayers).fill(E), topK: 2 };
  const graph = kind === 'lora' ? M.buildTrainGraph({ config, lora }) : M.buildTrainGraph({ config, moe });
  const init = kind === 'lora' ? M.loraToWeights(M.initLora({ config, lora, seed: 1, bScale: 0.01 })) : M.initMoe({ config, moe, seed: 1 });
  const { params } = weightsToParams(init);
  const obj = await lmObjective({ graph, frozen: base, weighting: 'examples', threads: availableParallelism() });
  const trainable = [...params.values()].reduce((a, p) => a + p.length, 0);
  return { kind, obj, params, trainable };
}

const sides = [await side('lora'), await side('moe')];
const times: Record<string, number[]> = { lora: [], moe: [] };
for (const s of sides) await s.obj.lossAndGrads({ params: s.params, examples: samples }); // warm-up
for (let i = 0; i < ITERS; i++) {
  for (const s of sides) {
    const t0 = performance.now();
    await s.obj.lossAndGrads({ params: s.params, examples: samples });
    times[s.kind].push((performance.now() - t0) / 1000);
  }
}
const median = (xs: number[]) => { const v = [...xs].sort((a, b) => a - b); return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2; };
console.log(`# LoRA-MoE vs LoRA training step: ${name} shape, batch ${B} × seq ${T}, ${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, ${ITERS} interleaved steps each`);
for (const s of sides) console.log(`${s.kind.padEnd(5)} ${s.kind === 'lora' ? `rank ${E * r}` : `${E} experts × rank ${r}, top-2`}: ${s.trainable} trainable, median ${median(times[s.kind]).toFixed(3)} s/step (${times[s.kind].map((x) => x.toFixed(2)).join(' ')})`);
console.log(`MoE / LoRA step time = ${(median(times.moe) / median(times.lora)).toFixed(2)}`);
for (const s of sides) await s.obj.release();
