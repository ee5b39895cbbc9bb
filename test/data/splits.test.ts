import test from 'ava';
import { ConfigError } from '../../src/errors.ts';
import { ndrSplits, NDR_PAPER_SIZES, type NdrSplits } from '../../src/data/splits.ts';

/** Labels with `counts[c]` examples of class c, interleaved (c = i mod K while counts last). */
function labelsOf(counts: number[]): number[] {
  const left = [...counts];
  const out: number[] = [];
  while (left.some((x) => x > 0)) left.forEach((x, c) => { if (x > 0) { out.push(c); left[c]--; } });
  return out;
}
const sizes = (s: NdrSplits) => [s.train.length, s.influence.length, s.evaluation.length];
const perClass = (ids: number[], labels: number[], K: number) => Array.from({ length: K }, (_, c) => ids.filter((i) => labels[i] === c).length);
const disjoint = (s: NdrSplits) => new Set([...s.train, ...s.influence, ...s.evaluation]).size === s.train.length + s.influence.length + s.evaluation.length;

test('default sizes are the paper caps 4500 / 500 / 500 when the data holds them', (t) => {
  t.deepEqual(NDR_PAPER_SIZES, { train: 4500, influence: 500, evaluation: 500 });
  const labels = labelsOf([3000, 3000]);
  const s = ndrSplits({ labels, seed: 1 });
  t.deepEqual(sizes(s), [4500, 500, 500]);
  t.deepEqual(perClass(s.train, labels, 2), [2250, 2250]);
  t.deepEqual(perClass(s.influence, labels, 2), [250, 250]);
  t.deepEqual(perClass(s.evaluation, labels, 2), [250, 250]);
  t.true(disjoint(s));
});

test('default sizes follow smaller data in 4500:500:500 proportions (largest remainder)', (t) => {
  // 1200 examples, 25% class 1: 1200·9/11 = 981.8 → 982; 1200/11 = 109.1 → 109, 109.
  const labels = labelsOf([900, 300]);
  const s = ndrSplits({ labels, seed: 3 });
  t.deepEqual(sizes(s), [982, 109, 109]);
  // Influence and evaluation: quotas 81.75 / 27.25 → 82 / 27; train gets the rest: 736 / 246.
  t.deepEqual(perClass(s.influence, labels, 2), [82, 27]);
  t.deepEqual(perClass(s.evaluation, labels, 2), [82, 27]);
  t.deepEqual(perClass(s.train, labels, 2), [736, 246]);
  t.true(disjoint(s));
  // Ten balanced examples: 8.2 : 0.9 : 0.9 would leave a split short of a class; each gets ≥ 2.
  const ten = labelsOf([5, 5]);
  const small = ndrSplits({ labels: ten, seed: 1 });
  t.deepEqual(sizes(small), [6, 2, 2]);
  t.deepEqual(perClass(small.influence, ten, 2), [1, 1]);
  t.deepEqual(perClass(small.evaluation, ten, 2), [1, 1]);
  t.deepEqual(perClass(small.train, ten, 2), [3, 3]);
});

test('explicit sizes are kept; undefined ones share what is left', (t) => {
  const labels = labelsOf([900, 300]);
  const s = ndrSplits({ labels, trainSize: 1000, seed: 2 });
  t.deepEqual(sizes(s), [1000, 100, 100]);
  t.deepEqual(perClass(s.influence, labels, 2), [75, 25]);
  t.deepEqual(perClass(s.train, labels, 2), [750, 250]);
  const v = ndrSplits({ labels, influenceSize: 50, evaluationSize: 70, seed: 2 });
  t.deepEqual(sizes(v), [1080, 50, 70]);
  // Sizes above the paper's caps are allowed when the data holds them; all n may be used.
  const all = ndrSplits({ labels: labelsOf([10, 10]), trainSize: 10, influenceSize: 5, evaluationSize: 5, seed: 4 });
  t.deepEqual([...all.train, ...all.influence, ...all.evaluation].sort((a, b) => a - b), Array.from({ length: 20 }, (_, i) => i));
});

test('every split holds every class, also for rare classes', (t) => {
  // 900 / 95 / 5: influence and evaluation quotas 45 / 4.75 / 0.25 → 45 / 4 / 1;
  // train quotas 450 / 47.5 / 2.5 → 450 / 48 / 2 (ties go to the lower class).
  const labels = labelsOf([900, 95, 5]);
  const s = ndrSplits({ labels, trainSize: 500, influenceSize: 50, evaluationSize: 50, seed: 7 });
  t.deepEqual(perClass(s.influence, labels, 3), [45, 4, 1]);
  t.deepEqual(perClass(s.evaluation, labels, 3), [45, 4, 1]);
  t.deepEqual(perClass(s.train, labels, 3), [450, 48, 2]);
  t.true(disjoint(s));
  // Three examples of a class: one per split, whatever the seed.
  const three = labelsOf([100, 3]);
  for (const seed of [1, 2, 3]) {
    const x = ndrSplits({ labels: three, trainSize: 80, influenceSize: 10, evaluationSize: 10, seed });
    for (const ids of [x.train, x.influence, x.evaluation]) t.is(perClass(ids, three, 2)[1], 1);
  }
});

test('splits are reproducible per seed and differ across seeds', (t) => {
  const labels = labelsOf([700, 300]);
  const a = ndrSplits({ labels, trainSize: 600, influenceSize: 100, evaluationSize: 100, seed: 11 });
  t.deepEqual(ndrSplits({ labels, trainSize: 600, influenceSize: 100, evaluationSize: 100, seed: 11 }), a);
  t.is(a.seed, 11);
  const b = ndrSplits({ labels, trainSize: 600, influenceSize: 100, evaluationSize: 100, seed: 12 });
  t.notDeepEqual(b.train, a.train);
  t.notDeepEqual(b.influence, a.influence);
  t.notDeepEqual(b.evaluation, a.evaluation);
  t.deepEqual(sizes(b), sizes(a));
  t.deepEqual(perClass(b.influence, labels, 2), perClass(a.influence, labels, 2));
});

test('sizes that do not fit throw ConfigError naming the fields', (t) => {
  const labels = labelsOf([900, 300]);
  t.throws(() => ndrSplits({ labels, trainSize: 4500, influenceSize: 500, evaluationSize: 500, seed: 1 }), {
    instanceOf: ConfigError,
    message: 'ndrSplits: trainSize 4500 + influenceSize 500 + evaluationSize 500 = 5500 exceeds the 1200 examples available',
  });
  t.throws(() => ndrSplits({ labels, trainSize: 1300, seed: 1 }), { instanceOf: ConfigError, message: 'ndrSplits: trainSize 1300 exceeds the 1200 examples available' });
  t.throws(() => ndrSplits({ labels, trainSize: 1197, seed: 1 }), { instanceOf: ConfigError, message: /too few samples per class: 3 of the 1200 examples left after trainSize 1197 for influenceSize, evaluationSize; expected at least 4/ });
  t.notThrows(() => ndrSplits({ labels, trainSize: 1196, seed: 1 }));
  t.throws(() => ndrSplits({ labels, influenceSize: 0, seed: 1 }), { instanceOf: ConfigError, message: /influenceSize 0; expected an integer ≥ 1/ });
  t.throws(() => ndrSplits({ labels, evaluationSize: 2.5, seed: 1 }), { instanceOf: ConfigError, message: /evaluationSize 2\.5/ });
  t.throws(() => ndrSplits({ labels, trainSize: Number.NaN, seed: 1 }), { instanceOf: ConfigError, message: /trainSize NaN/ });
});

test('too few samples per class: ConfigError naming the class and the split', (t) => {
  t.throws(() => ndrSplits({ labels: labelsOf([20, 2]), seed: 1 }), { instanceOf: ConfigError, message: /too few samples per class: class 1 has 2 examples, so the train split would have none/ });
  t.throws(() => ndrSplits({ labels: labelsOf([20, 1]), seed: 1 }), { instanceOf: ConfigError, message: /too few samples per class: class 1 has 1 example, so the evaluation split would have none/ });
  t.throws(() => ndrSplits({ labels: labelsOf([50, 50]), evaluationSize: 1, seed: 1 }), { instanceOf: ConfigError, message: /too few samples per class: evaluationSize 1 is less than the 2 classes, so the evaluation split would have no example of class 1/ });
  t.throws(() => ndrSplits({ labels: labelsOf([3, 2]), seed: 1 }), { instanceOf: ConfigError, message: /too few samples per class: 5 of the 5 examples left for trainSize, influenceSize, evaluationSize; expected at least 6/ });
});
