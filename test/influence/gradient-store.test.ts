/** The gradient store's shard format: dense units and sparse word-embedding rows round-trip exactly; mismatches are DataErrors. */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeShard, encodeShard, readDenseSet, readEmbeddingSet, GRADIENT_STORE_FORMAT, type GradientIndex, type GradientUnit, type DecodedShard } from '../../src/influence/gradient-store.ts';
import { ArtifactStore } from '../../src/store/artifacts.ts';
import { DataError } from '../../src/errors.ts';
import { createRng } from '../../src/data/random.ts';

const units: GradientUnit[] = [
  { unit: 'a', layer: 0, kind: 'block', d: 6, shape: [2, 3] },
  { unit: 'score.weight', layer: 1, kind: 'classifier', d: 4, shape: [2, 2] },
];
const D = 3;

function shard(rows: number, seed: number): DecodedShard {
  const r = createRng(seed);
  const f = (n: number) => Float32Array.from({ length: n }, () => r.next() - 0.5);
  return {
    rows,
    losses: f(rows),
    dense: new Map(units.map((u) => [u.unit, f(rows * u.d)])),
    embedding: Array.from({ length: rows }, (_, i) => ({ rows: Int32Array.from(i % 2 ? [1, 4] : [0, 2, 7]), values: f((i % 2 ? 2 : 3) * D) })),
  };
}

test('a shard round-trips exactly (dense units, losses, sparse embedding rows)', (t) => {
  const s = shard(5, 1);
  const back = decodeShard(encodeShard(s, units, D), units, 'shard', D);
  t.is(back.rows, 5);
  t.deepEqual(back.losses, s.losses);
  for (const u of units) t.deepEqual(back.dense.get(u.unit), s.dense.get(u.unit));
  t.deepEqual(back.embedding!.map((e) => [...e.rows]), s.embedding!.map((e) => [...e.rows]));
  t.deepEqual(back.embedding!.map((e) => [...e.values]), s.embedding!.map((e) => [...e.values]));
});

test('a shard whose unit has the wrong width, or misses a unit, is a DataError', (t) => {
  const s = shard(2, 2);
  t.throws(() => encodeShard({ ...s, dense: new Map([['a', new Float32Array(3)], ['score.weight', new Float32Array(8)]]) }, units, D), { instanceOf: DataError, message: /unit a/ });
  const bytes = encodeShard(s, units, D);
  t.throws(() => decodeShard(bytes, [...units, { unit: 'b', layer: 0, kind: 'block', d: 2, shape: [1, 2] }], 'shard 0', D), { instanceOf: DataError, message: /shard 0: no tensor "g.b"/ });
});

test('whole sets from committed shards: rows in order across shards', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-gs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const store = new ArtifactStore(dir);
  const s0 = shard(3, 3), s1 = shard(2, 4);
  const f0 = await store.commitShard('k', 0, encodeShard(s0, units, D));
  const f1 = await store.commitShard('k', 1, encodeShard(s1, units, D));
  const index: GradientIndex = {
    format: GRADIENT_STORE_FORMAT, dtype: 'F32', shardSize: 3, units, loss: 'test',
    embedding: { unit: 'emb', layer: -1, kind: 'embedding', d: 8 * D, shape: [8, D], D, vocab: 8 },
    sets: { train: { n: 5, shards: [{ ...f0, index: 0, set: 'train', rowOffset: 0, rows: 3 }, { ...f1, index: 1, set: 'train', rowOffset: 3, rows: 2 }] }, influence: { n: 0, shards: [] } },
  };
  const dense = await readDenseSet(store, index, 'train');
  t.deepEqual([...dense.get('a')!.data], [...s0.dense.get('a')!, ...s1.dense.get('a')!]);
  const emb = await readEmbeddingSet(store, index, 'train');
  t.is(emb.samples.length, 5);
  t.deepEqual([...emb.samples[3].rows], [0, 2, 7]);
});
