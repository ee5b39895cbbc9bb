/**
 * Orchestration cost of a fully cached sweep (issue 13, target 6): the tiny NDR pipeline
 * (configs/models/tiny-llama on SpamAssassin) with one axis over a setting of its `ndr` stage
 * (`stages.ndr.p`), so every cell shares data, fine-tuning, gradients and influence and has its own
 * ndr, retrain and benchmark. Real services in a temporary home: a Temporal dev server, MLflow and
 * an in-process worker pool, as `layerflow up` runs them.
 *
 * For each size N (BENCH_CELLS, default 10,100,400): the sweep is run once to fill the cache (its
 * cells are a prefix of the next size's, so each size computes only its new cells), then run again,
 * fully cached, timed from plan to result (what `layerflow run` waits for). Printed: the cached
 * re-run's wall time, ms per cached stage and per cell, and the growth from one size to the next.
 *
 *   npx tsx bench/cached-sweep.ts
 *
 * BENCH_CELLS   sizes (default 10,100,400)
 * BENCH_TARGETS stages to run (default: the whole pipeline; e.g. `ndr` skips retrain/benchmark)
 * BENCH_REPS    cached re-runs per size, the median is reported (default 3)
 */
import { writeFile } from 'node:fs/promises';
import { cpus, availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { planFile, submitSweep } from '../src/cli/sweeps.ts';
import type { SweepResult } from '../workflows/sweep.ts';
import { startBenchStack } from './stack.ts';
import { envInt } from './common.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TINY = join(ROOT, 'configs/models/tiny-llama');
const sizes = (process.env.BENCH_CELLS ?? '10,100,400').split(',').map(Number);
const targets = process.env.BENCH_TARGETS;
const reps = envInt('BENCH_REPS', 3);

function sweepText(n: number): string {
  const ps = Array.from({ length: n }, (_, i) => (i + 1) / 1000);
  return `sweep: cached-${n}
pipeline: ndr
concurrency: 4
${targets ? `targets: [${targets}]\n` : ''}models:
  - { id: tiny, path: ${TINY} }
tasks:
  - { id: spam, source: spam-assassin, groups: [easy-ham-1, spam-1] }
methods:
  - { id: tracin, influence: tracin }
stages:
  data: { noise: 0.2, trainSize: 40, influenceSize: 8, evaluationSize: 12 }
  finetune: { epochs: 1, batchSize: 8, microBatchSize: 8, maxLength: 24, lr: 0.003 }
  gradients: { shardSize: 16, batchSize: 8 }
  retrain: { epochs: 1 }
axes:
  stages.ndr.p: [${ps.join(', ')}]
`;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const { dir, env, client, stop } = await startBenchStack('lf-bench-cached-');
try {
  console.log(`# cached sweep benchmark: tiny NDR pipeline${targets ? ` (targets: ${targets})` : ''}, sizes ${sizes.join(', ')}, ${reps} cached re-runs each`);
  console.log(`# ${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, node ${process.version}`);
  const rows: { n: number; stages: number; wall: number }[] = [];
  for (const n of sizes) {
    const file = join(dir, `cached-${n}.yaml`);
    await writeFile(file, sweepText(n));
    const run = async () => {
      const t0 = performance.now();
      const plan = await planFile(file);
      const r = (await (await submitSweep(client, env, plan)).result()) as SweepResult;
      return { plan, r, wall: (performance.now() - t0) / 1000 };
    };
    const first = await run();
    if (first.r.failed) throw new Error(`${first.r.failed} cells failed: ${JSON.stringify(Object.values(first.r.cells).find((c) => c.error)?.error)}`);
    const computed = Object.values(first.r.cells).flatMap((c) => Object.values(c.stages ?? {})).filter((s) => s.status === 'computed').length;
    const walls: number[] = [];
    let stages = 0;
    for (let i = 0; i < reps; i++) {
      const again = await run();
      const all = Object.values(again.r.cells).flatMap((c) => Object.values(c.stages ?? {}));
      const notCached = all.filter((s) => s.status !== 'cached').length;
      if (again.r.failed || notCached) throw new Error(`re-run of ${n} cells: ${again.r.failed} failed, ${notCached} stages not cached`);
      stages = again.plan.cells.reduce((a, c) => a + c.stages.length, 0);
      walls.push(again.wall);
    }
    const wall = median(walls);
    rows.push({ n, stages, wall });
    console.log(`${String(n).padStart(4)} cells, ${String(stages).padStart(5)} stages: fill ${first.wall.toFixed(1)} s (${computed} computed); cached re-run ${wall.toFixed(2)} s `
      + `(runs ${walls.map((w) => w.toFixed(2)).join(', ')}) = ${((wall * 1000) / stages).toFixed(1)} ms per cached stage, ${((wall * 1000) / n).toFixed(1)} ms per cell`);
  }
  for (let i = 1; i < rows.length; i++) {
    const [a, b] = [rows[i - 1], rows[i]];
    console.log(`growth ${a.n} → ${b.n} cells (×${(b.n / a.n).toFixed(1)}): cached re-run ×${(b.wall / a.wall).toFixed(2)}`);
  }
} finally {
  await stop();
}
