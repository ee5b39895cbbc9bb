import test from 'ava';
import { DataError, ConfigError } from '../../src/errors.ts';
import { layerGroups } from '../../src/influence/layer-groups.ts';
import { layerScores, scoreVariant } from '../../src/influence/layer-scores.ts';
import type { UnitInfluence } from '../../src/influence/types.ts';

const inf = (unit: string, layer: number, scores: number[], kind?: 'embedding' | 'classifier'): UnitInfluence => ({
  unit, layer, kind, method: 'datainf', convention: 'positive=helpful', validation: 'mean', scores: Float64Array.from(scores),
});

test('score variants on a hand vector', (t) => {
  const s = [1, -3, 2, 5, 0, 4, 3, -1];
  t.is(scoreVariant(s, '+VE'), 15);
  t.is(scoreVariant(s, 'ALL'), 11);
  // positives sorted 1,2,3,4,5 → 75th percentile = 4 → 4 + 5.
  t.is(scoreVariant(s, 'TOP25'), 9);
  t.is(scoreVariant([-1, -2], 'TOP25'), 0);
});

test('per-block mean, per-matrix and layer-score mean', (t) => {
  const units = [inf('0.q', 0, [2, -4]), inf('0.v', 0, [0, 2]), inf('1.q', 1, [1, 1]), inf('emb', -1, [9, 9], 'embedding')];
  const blocks = layerScores({ influences: units });
  t.deepEqual(blocks.map((b) => [b.layer, b.score]), [[0, 1], [1, 2]]); // block 0 mean = (1, −1)
  t.is(blocks[0].convention, 'positive=helpful');
  t.deepEqual(layerScores({ influences: units, blockMean: 'layer-scores' }).map((b) => b.score), [2, 2]);
  t.deepEqual(layerScores({ influences: units, grouping: 'per-matrix', variant: 'ALL' }).map((b) => b.score), [-2, 2, 2]);
  t.throws(() => layerScores({ influences: [inf('a', 0, [1, NaN])] }), { instanceOf: DataError, message: /NaN/ });
  t.throws(() => layerScores({ influences: [inf('a', 0, [1]), inf('b', 1, [1, 2])] }), { instanceOf: DataError, message: /same training set/ });
  t.throws(() => layerScores({ influences: [] }), { instanceOf: DataError });
});

test('layer groups: WE, four block groups, CL, all, custom', (t) => {
  const units = [
    { unit: 'emb', layer: -1, kind: 'embedding' as const },
    ...Array.from({ length: 8 }, (_, l) => ({ unit: `${l}.q`, layer: l })),
    { unit: 'head', layer: 99, kind: 'classifier' as const },
  ];
  const g = layerGroups({ units, custom: { mid: [3, 4], named: ['head'] } });
  t.deepEqual(g.map((x) => x.name), ['WE', 'blocks 0-1', 'blocks 2-3', 'blocks 4-5', 'blocks 6-7', 'CL', 'all', 'mid', 'named']);
  t.deepEqual(g[2].units, ['2.q', '3.q']);
  t.deepEqual(g[7].units, ['3.q', '4.q']);
  t.is(g[6].units.length, 10);
  t.throws(() => layerGroups({ units, custom: { bad: [42] } }), { instanceOf: ConfigError, message: /42/ });
  t.throws(() => layerGroups({ units, blockGroups: 9 }), { instanceOf: ConfigError });
});
