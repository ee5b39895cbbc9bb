import test from 'ava';
import { DataError } from '../../src/errors.ts';
import { cancellationEffect, CancellationAccumulator } from '../../src/influence/cancellation.ts';
import { cosineInfluence } from '../../src/influence/cosine.ts';
import { dataInfInfluence } from '../../src/influence/datainf.ts';
import { reduceValidationStream, streamingInfluence, type GradientShard } from '../../src/influence/streaming.ts';
import { tracInInfluence } from '../../src/influence/tracin.ts';
import type { UnitGradients } from '../../src/influence/types.ts';
import { reduceValidation } from '../../src/influence/validation.ts';
import { randomGrads } from './helpers.ts';

/** Split units into shards of `rows` rows each (all units in each shard). */
function shards(units: UnitGradients[], rows: number): GradientShard[] {
  const out: GradientShard[] = [];
  for (let r0 = 0; r0 < units[0].n; r0 += rows) {
    out.push(units.map((u) => {
      const n = Math.min(rows, u.n - r0);
      return { ...u, n, rowOffset: r0, data: u.data.slice(r0 * u.d, (r0 + n) * u.d) };
    }));
  }
  return out;
}

async function* asAsync<T>(items: T[]): AsyncIterable<T> {
  for (const x of items) yield x;
}

test('streaming equals in-memory for TracIn, cosine and DataInf (sync and async sources)', async (t) => {
  const units = [randomGrads('l0.q', 23, 6, 1, 0), randomGrads('l1.v', 23, 4, 2, 1)];
  const vals = [randomGrads('l0.q', 5, 6, 3, 0), randomGrads('l1.v', 5, 4, 4, 1)];
  const vmap = await reduceValidationStream(() => asAsync(shards(vals, 2)), 'mean');
  for (const u of vals) t.deepEqual(Array.from(vmap.get(u.unit)!), Array.from(reduceValidation(u, 'mean')));
  const fns = { tracin: tracInInfluence, cosine: cosineInfluence, datainf: dataInfInfluence };
  for (const method of ['tracin', 'cosine', 'datainf'] as const) {
    for (const source of [() => shards(units, 5), () => asAsync(shards(units, 7))]) {
      const res = await streamingInfluence({ method, train: source, validation: vmap });
      t.is(res.length, 2);
      for (const r of res) {
        const u = units.find((x) => x.unit === r.unit)!;
        const ref = fns[method]({ train: u, validation: vals.find((x) => x.unit === r.unit)! });
        t.is(r.convention, 'positive=helpful');
        t.is(r.scores.length, 23);
        for (let k = 0; k < 23; k++) t.true(Math.abs(r.scores[k] - ref.scores[k]) < 1e-9 * Math.max(1, Math.abs(ref.scores[k])), `${method} ${r.unit} k=${k}`);
        if (method === 'datainf') t.true(Math.abs(r.lambda! - ref.lambda!) < 1e-12);
      }
    }
  }
});

test('streaming DataInf with a known λ (two passes) equals in-memory', async (t) => {
  const u = randomGrads('w', 10, 3, 9);
  const v = reduceValidation(randomGrads('w', 3, 3, 8));
  let passes = 0;
  const source = () => { passes++; return shards([u], 4); };
  const res = await streamingInfluence({ method: 'datainf', train: source, validation: new Map([['w', v]]), lambda: { w: 0.3 } });
  t.is(passes, 2);
  const ref = dataInfInfluence({ train: u, validation: v, lambda: 0.3 });
  res[0].scores.forEach((s, k) => t.true(Math.abs(s - ref.scores[k]) < 1e-9));
});

test('streaming rejects gaps, missing validation units and inconsistent passes', async (t) => {
  const u = randomGrads('w', 6, 3, 9);
  const v = new Map([['w', new Float64Array(3).fill(1)]]);
  const s = shards([u], 2);
  await t.throwsAsync(streamingInfluence({ method: 'tracin', train: () => [s[0], s[2]], validation: v }), { instanceOf: DataError, message: /starts at row 4; expected row 2/ });
  await t.throwsAsync(streamingInfluence({ method: 'tracin', train: () => s, validation: new Map() }), { instanceOf: DataError, message: /no validation gradient/ });
  let call = 0;
  await t.throwsAsync(streamingInfluence({ method: 'datainf', train: () => (call++ === 0 ? s : s.slice(0, 2)), validation: v }), { instanceOf: DataError, message: /same shards/ });
  await t.throwsAsync(streamingInfluence({ method: 'tracin', train: () => [], validation: v }), { instanceOf: DataError, message: /no rows/ });
});

test('cancellation effect: hand example and streaming accumulation', (t) => {
  // g_0 = (1, −2), g_1 = (−1, 1): Σ|g| = 5, |Σ g| = |0| + |−1| = 1 → C = 5.
  const g = { unit: 'u', layer: 0, n: 2, d: 2, data: new Float64Array([1, -2, -1, 1]) };
  t.is(cancellationEffect(g), 5);
  const big = randomGrads('u', 9, 4, 5);
  const acc = new CancellationAccumulator();
  for (const sh of shards([big], 4)) acc.add((sh as UnitGradients[])[0]);
  t.true(Math.abs(acc.value() - cancellationEffect(big)) < 1e-12);
  t.throws(() => cancellationEffect({ ...g, data: new Float64Array([1, 1, -1, -1]) }), { instanceOf: DataError, message: /exactly zero/ });
});
