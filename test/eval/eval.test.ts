import test from 'ava';
import { DataError } from '../../src/errors.ts';
import { classificationAccuracy } from '../../src/eval/classification.ts';
import { exactMatchAccuracy } from '../../src/eval/exact-match.ts';
import { multipleChoiceAccuracy } from '../../src/eval/multiple-choice.ts';
import { perplexity } from '../../src/eval/perplexity.ts';

test('multiple choice: acc and byte-length acc_norm over the bare options, gold lists', (t) => {
  const items = [
    // acc picks option 0 (−4 > −6); per byte of the bare option: −4/3 = −1.33 vs −6/11 = −0.55 → acc_norm picks option 1 (gold).
    { logLikelihoods: [-4, -6], options: ['cat', 'caterpillar'], gold: 1 },
    { logLikelihoods: [-1, -2, -3], options: ['a', 'b', 'c'], gold: 0 },
  ];
  const r = multipleChoiceAccuracy({ items });
  t.is(r.acc, 0.5);
  t.is(r.accNorm, 1);
  t.deepEqual(r.items, [{ pred: 0, predNorm: 1, correct: false, correctNorm: true }, { pred: 0, predNorm: 0, correct: true, correctNorm: true }]);
  // The delimiter is not counted: with ' cat' / ' caterpillar' (4 / 12 bytes) the ratios would be −1 vs −0.5, here −1.33 vs −0.55.
  // Byte vs character length differ on non-ASCII text: 'é' is 2 bytes, 1 char.
  const nonAscii = [{ logLikelihoods: [-2.9, -2.1], options: ['é', 'e'], gold: 0 }];
  t.is(multipleChoiceAccuracy({ items: nonAscii }).accNorm, 1); // −1.45 > −2.1
  t.is(multipleChoiceAccuracy({ items: nonAscii, lengthUnit: 'chars' }).accNorm, 0); // −2.9 < −2.1
  // Several correct options (BIG-bench target_scores): the prediction only has to be one of them.
  const multi = multipleChoiceAccuracy({ items: [{ logLikelihoods: [-3, -2, -2.5], options: ['x', 'yy', 'zzzzzz'], gold: [1, 2] }] });
  t.like(multi, { acc: 1, accNorm: 1, items: [{ pred: 1, predNorm: 2 }] });
  t.is(multipleChoiceAccuracy({ items: [{ logLikelihoods: [-3, -1, -2], gold: [0, 2] }] }).acc, 0);
  t.is(multipleChoiceAccuracy({ items: [{ logLikelihoods: [-1, -2], gold: 1 }] }).accNorm, undefined);
  t.throws(() => multipleChoiceAccuracy({ items: [{ logLikelihoods: [-1, NaN], gold: 0 }] }), { instanceOf: DataError, message: /NaN/ });
  t.throws(() => multipleChoiceAccuracy({ items: [{ logLikelihoods: [-1, -2], gold: 2 }] }), { instanceOf: DataError, message: /gold = 2/ });
  t.throws(() => multipleChoiceAccuracy({ items: [{ logLikelihoods: [-1, -2], gold: [] }] }), { instanceOf: DataError, message: /gold is empty/ });
  t.throws(() => multipleChoiceAccuracy({ items: [{ logLikelihoods: [-1, -2], options: ['a', ''], gold: 0 }] }), { instanceOf: DataError, message: /option 1 is empty/ });
  t.throws(() => multipleChoiceAccuracy({ items: [] }), { instanceOf: DataError, message: /empty/ });
});

test('classification accuracy from labels or logits, with the correct-mask', (t) => {
  t.deepEqual(classificationAccuracy({ labels: [0, 1, 1], predictions: [0, 0, 1] }), { accuracy: 2 / 3, correct: [true, false, true], n: 3 });
  t.is(classificationAccuracy({ labels: [1, 0], logits: [[0.1, 0.9], [2, 2]] }).accuracy, 1);
  t.throws(() => classificationAccuracy({ labels: [1, 0], predictions: [1] }), { instanceOf: DataError, message: /expected equal counts/ });
});

test('perplexity is token-weighted over the set', (t) => {
  const r = perplexity({ tokenNlls: [[1, 2], [3]] });
  t.is(r.tokens, 3);
  t.true(Math.abs(r.perplexity - Math.exp(2)) < 1e-12);
  t.throws(() => perplexity({ tokenNlls: [[]] }), { instanceOf: DataError, message: /no scored tokens/ });
  t.throws(() => perplexity({ tokenNlls: [[1, Infinity]] }), { instanceOf: DataError });
});

test('exact match with answer extraction', (t) => {
  const generations = ['so the total is 12.\n#### 1,200', 'answer: 7 then 8', 'no number here', '#### 5'];
  const r = exactMatchAccuracy({ generations, answers: ['1200', '8', '3', '6'], extract: /(-?\d[\d,]*)/, pick: 'last', ignore: [/,/] });
  t.deepEqual(r.extracted, ['1,200', '8', null, '5']);
  t.deepEqual(r.correct, [true, true, false, false]);
  t.is(r.accuracy, 0.5);
  t.is(exactMatchAccuracy({ generations: ['#### 12 and 13'], answers: ['12'], extract: /#### (\d+)/ }).accuracy, 1);
  t.is(exactMatchAccuracy({ generations: [' Paris '], answers: ['paris'], ignoreCase: true }).accuracy, 1);
  t.throws(() => exactMatchAccuracy({ generations: ['a'], answers: [] }), { instanceOf: DataError });
});
