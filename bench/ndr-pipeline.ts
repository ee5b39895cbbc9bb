/**
 * The NDR pipeline inside the orchestrator (issue 9's benchmarks), both sides measured in one run:
 *
 *   1. Orchestration overhead: a sweep (default configs/quickstart.yaml) on fresh, real services —
 *      Temporal dev server, MLflow, an in-process worker pool — in a temporary home (nothing cached).
 *      Wall time from submit to result against the sum of the stages' own compute time (what each
 *      activity measured between its cache miss and its commit). Device-bound stages run one at a
 *      time on the one device; `data` and `ndr` run beside them on the control queue, so the sum
 *      can exceed the wall time and the overhead reads low rather than high.
 *   2. The `gradients` stage's samples/s inside the pipeline against the same per-example gradient
 *      graph (same model, units, batches and samples as the stage) run in a bare loop here, as
 *      bench/per-example-grads.ts does: graph build, session and runs, no shards, no store, no Temporal.
 *
 *   npx tsx bench/ndr-pipeline.ts [sweep.yaml]
 */
import { cpus, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { paths } from '../src/config/env.ts';
import { planFile, submitSweep } from '../src/cli/sweeps.ts';
import { ArtifactStore, refOf } from '../src/store/artifacts.ts';
import type { SweepResult } from '../workflows/sweep.ts';
import { startBenchStack } from './stack.ts';
import * as M from '../src/models/index.ts';
import { loadModel } from '../src/models/load.ts';
import { paramsToWeights } from '../src/train/lm.ts';
import { encodeExample, modelPath, readAdapter, type ClassifierRecord, type NdrDataset } from '../activities/shared.ts';
import type { GradientSettings } from '../activities/gradients.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const file = process.argv[2] ?? join(ROOT, 'configs/quickstart.yaml');

const { home, env, client, stop } = await startBenchStack('lf-bench-ndr-');
try {
  console.log(`# NDR pipeline benchmark: ${file}`);
  console.log(`# ${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, node ${process.version}`);
  const plan = await planFile(file);
  const t0 = performance.now();
  const result = (await (await submitSweep(client, env, plan)).result()) as SweepResult;
  const wall = (performance.now() - t0) / 1000;
  let sum = 0, device = 0;
  const byStage = new Map<string, number>();
  for (const c of Object.values(result.cells)) {
    for (const [name, s] of Object.entries(c.stages ?? {})) {
      if (s.status !== 'computed') continue;
      sum += s.seconds ?? 0;
      if (plan.cells[0].stages.find((x) => x.name === name)?.device) device += s.seconds ?? 0;
      byStage.set(name, (byStage.get(name) ?? 0) + (s.seconds ?? 0));
    }
  }
  console.log(`cells: ${result.succeeded} succeeded, ${result.failed} failed`);
  console.log(`stage compute (s): ${[...byStage].map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
  console.log(`wall ${wall.toFixed(1)} s; Σ stage compute ${sum.toFixed(1)} s (device stages ${device.toFixed(1)} s)`);
  console.log(`orchestration overhead: wall / Σ compute − 1 = ${((wall / sum - 1) * 100).toFixed(2)} %; wall / Σ device compute − 1 = ${((wall / device - 1) * 100).toFixed(2)} %`);

  // 2. gradients: the first cell's stage against a bare loop of the same graph on the same batches.
  const store = new ArtifactStore(paths.store(home));
  const cell = plan.cells[0];
  const key = (s: string) => cell.stages.find((x) => x.name === s)!.key;
  const look = async (s: string) => { const r = await store.lookup(key(s)); if (r.status !== 'hit') throw new Error(`no ${s} artifact`); return r.manifest; };
  const [dataM, ftM] = [await look('data'), await look('finetune')];
  const gradSeconds = result.cells[cell.cellId].stages!.gradients.seconds!;
  const ds = await store.readJson<NdrDataset>(refOf(dataM), 'dataset.json');
  const rec = await store.readJson<ClassifierRecord>(refOf(ftM), 'classifier.json');
  const s = cell.stages.find((x) => x.name === 'gradients')!.parts.slice.settings as GradientSettings;
  const entry = plan.cells[0].stages.find((x) => x.name === 'finetune')!.parts.slice.model as { id: string };
  const model = await loadModel({ id: entry.id, path: modelPath(home, entry as never) });
  const { params, shapes } = await readAdapter(store, refOf(ftM));
  const weights = paramsToWeights(params, shapes, new Map(model.weights));
  const samples = [...ds.train, ...ds.influence].map((e) => encodeExample(model.tokenizer, e, rec.maxLength));
  const t1 = performance.now();
  const runner = await M.PerExampleGradRunner.create({
    graph: M.buildPerExampleGradGraph({ config: model.config, lora: rec.spec.lora, numLabels: rec.spec.numLabels, units: { lora: true, head: s.head, embeddingRows: s.embedding } }),
    device: 'cpu:0',
  });
  // Batches as the stage forms them: within shards of shardSize, batchSize at a time.
  for (const [o0, list] of [[0, ds.train.length], [ds.train.length, ds.influence.length]] as const) {
    for (let o = 0; o < list; o += s.shardSize) {
      const shard = samples.slice(o0 + o, o0 + Math.min(list, o + s.shardSize));
      for (let b = 0; b < shard.length; b += s.batchSize) await runner.run({ weights, batch: M.padBatch(shard.slice(b, b + s.batchSize), { padId: rec.padId }) });
    }
  }
  const bare = (performance.now() - t1) / 1000;
  await runner.release();
  const n = samples.length;
  console.log(`gradients: pipeline ${(n / gradSeconds).toFixed(2)} samples/s (${gradSeconds.toFixed(1)} s), bare loop ${(n / bare).toFixed(2)} samples/s (${bare.toFixed(1)} s); pipeline / bare = ${(bare / gradSeconds).toFixed(3)}`);
} finally {
  await stop();
}
