import test from 'ava';
import { ConfigError, DataError, MissingArtifactError } from '../../src/errors.ts';
import { loadTaskJsonl, parseTaskJsonl } from '../../src/data/jsonl.ts';
import { injectLabelNoise } from '../../src/data/noise.ts';
import { createRng } from '../../src/data/random.ts';
import { ndrSplits, stratifiedSample } from '../../src/data/splits.ts';
import { syntheticAdditionTask, syntheticGaussianTask, syntheticKeywordTask } from '../../src/data/synthetic.ts';

const fixture = (name: string) => new URL(`../fixtures/science/${name}`, import.meta.url).pathname;

test('seeded PRNG is reproducible and roughly uniform', (t) => {
  const a = createRng(123), b = createRng(123), c = createRng(124);
  const xs = Array.from({ length: 1000 }, () => a.next());
  t.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b.next()));
  t.notDeepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => c.next()));
  t.true(xs.every((x) => x >= 0 && x < 1));
  t.true(Math.abs(xs.reduce((s, x) => s + x, 0) / 1000 - 0.5) < 0.05);
  t.throws(() => createRng(1.5), { instanceOf: ConfigError });
});

test('JSONL task datasets: both kinds, string labels and answers', (t) => {
  const cls = loadTaskJsonl(fixture('tiny-classification.jsonl'));
  t.is(cls.kind, 'classification');
  if (cls.kind !== 'classification') return;
  t.deepEqual(cls.labelNames, ['ham', 'spam']);
  t.deepEqual(cls.examples.map((e) => e.label), [1, 0, 1]);
  const ch = loadTaskJsonl(fixture('tiny-choice.jsonl'));
  t.is(ch.kind, 'choice');
  if (ch.kind === 'choice') t.deepEqual(ch.examples.map((e) => e.answer), [1, 0]);
});

test('bad JSONL rows throw DataError with file:line', (t) => {
  t.throws(() => parseTaskJsonl('{"text": "a", "label": 0}\n{"text": "b"}', 'x.jsonl'), { instanceOf: DataError, message: /^x\.jsonl:2: field "label"/ });
  t.throws(() => parseTaskJsonl('{"text": "a", "label": 0}\n\n{oops', 'x.jsonl'), { instanceOf: DataError, message: /^x\.jsonl:3: not valid JSON/ });
  t.throws(() => parseTaskJsonl('{"prompt": "p", "choices": ["a", "b"], "answer": 5}', 'y.jsonl'), { instanceOf: DataError, message: /^y\.jsonl:1: field "answer"/ });
  t.throws(() => parseTaskJsonl('{"prompt": "p", "choices": ["a", "b"], "answer": 0}\n{"text": "t", "label": 1}', 'y.jsonl'), { instanceOf: DataError, message: /^y\.jsonl:2: a classification row in a choice dataset/ });
  t.throws(() => parseTaskJsonl('{"foo": 1}', 'z.jsonl'), { instanceOf: DataError, message: /^z\.jsonl:1: expected fields/ });
  t.throws(() => parseTaskJsonl('\n\n', 'e.jsonl'), { instanceOf: DataError, message: /no examples/ });
  t.throws(() => loadTaskJsonl('/nonexistent/file.jsonl'), { instanceOf: MissingArtifactError });
});

test('label noise flips exactly round(0.2·n) samples, reproducibly per seed', (t) => {
  for (const n of [1, 7, 10, 333, 4500]) {
    const labels = Array.from({ length: n }, (_, i) => (i * 7) % 2);
    const a = injectLabelNoise({ labels, seed: 3 });
    t.is(a.noisyIds.length, Math.round(0.2 * n));
    const changed = labels.map((y, i) => (a.labels[i] !== y ? i : -1)).filter((i) => i >= 0);
    t.deepEqual(changed, a.noisyIds);
    t.deepEqual(injectLabelNoise({ labels, seed: 3 }), a);
    if (n > 100) t.notDeepEqual(injectLabelNoise({ labels, seed: 4 }).noisyIds, a.noisyIds);
  }
  const multi = injectLabelNoise({ labels: Array.from({ length: 100 }, (_, i) => i % 5), numClasses: 5, fraction: 0.3, seed: 1 });
  t.is(multi.noisyIds.length, 30);
  for (const i of multi.noisyIds) t.true(multi.labels[i] !== i % 5 && multi.labels[i] >= 0 && multi.labels[i] < 5);
  t.throws(() => injectLabelNoise({ labels: [0, 2], seed: 1 }), { instanceOf: DataError, message: /label 1 is 2/ });
  t.throws(() => injectLabelNoise({ labels: [0, 1], fraction: 1.5, seed: 1 }), { instanceOf: ConfigError });
  t.throws(() => injectLabelNoise({ labels: [], seed: 1 }), { instanceOf: DataError });
});

test('stratified NDR splits: disjoint, sized, class-balanced, seeded', (t) => {
  // 30% class 1.
  const labels = Array.from({ length: 2000 }, (_, i) => (i % 10 < 3 ? 1 : 0));
  const opts = { labels, trainSize: 1000, influenceSize: 200, evaluationSize: 200 };
  const s = ndrSplits({ ...opts, seed: 9 });
  t.is(s.train.length, 1000);
  t.is(s.influence.length, 200);
  t.is(s.evaluation.length, 200);
  const all = new Set([...s.train, ...s.influence, ...s.evaluation]);
  t.is(all.size, 1400);
  const ones = (ids: number[]) => ids.filter((i) => labels[i] === 1).length;
  t.is(ones(s.train), 300);
  t.is(ones(s.influence), 60);
  t.is(ones(s.evaluation), 60);
  for (const ids of [s.train, s.influence, s.evaluation]) t.deepEqual(ids, [...ids].sort((a, b) => a - b));
  t.deepEqual(ndrSplits({ ...opts, seed: 9 }), s);
  const other = ndrSplits({ ...opts, seed: 10 });
  t.notDeepEqual(other.train, s.train);
  t.notDeepEqual(other.influence, s.influence);
  t.is(ones(other.influence), 60);
  t.throws(() => stratifiedSample([0, 1], [0, 1], 3, createRng(1)), { instanceOf: ConfigError });
  t.throws(() => ndrSplits({ labels: [0, 1], seed: 1 }), { instanceOf: DataError });
});

test('synthetic tasks have their stated structure', (t) => {
  const kw = syntheticKeywordTask({ n: 50, seed: 2 });
  if (kw.kind === 'classification') for (const e of kw.examples) t.is(e.text.split(' ').includes('great'), e.label === 1);
  const add = syntheticAdditionTask({ n: 20, seed: 2 });
  if (add.kind === 'choice') {
    for (const e of add.examples) {
      const [a, b] = e.prompt.split(' + ').map((x) => parseInt(x, 10));
      t.is(Number(e.choices[e.answer]), a + b);
      t.is(new Set(e.choices).size, 4);
    }
  }
  const g = syntheticGaussianTask({ n: 10, d: 3, seed: 1 });
  t.is(g.features.length, 30);
});
