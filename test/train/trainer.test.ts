/** The training loop on a tiny softmax-regression ONNX model (src/onnx + src/autodiff). */
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DataError } from '../../src/errors.ts';
import { loadBestCheckpoint, loadCheckpoint } from '../../src/train/checkpoint.ts';
import { evaluateLoss, train, type TrainOptions } from '../../src/train/trainer.ts';
import { initParams, points, shapes, softmaxObjective, type Point } from './_softmax.ts';

const tmp = async (t: ExecutionContext) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-train-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
};
const data = { train: points(40, 1), validation: points(16, 2) };

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0, w = 0;
  for (let i = 0; i < b.length; i++) { s = Math.max(s, Math.abs(b[i])); w = Math.max(w, Math.abs(a[i] - b[i])); }
  return w / (s + 1e-30);
}

test('the objective gradient matches finite differences (sanity of the test model)', async (t) => {
  const obj = await softmaxObjective();
  const params = new Map([['W', Float32Array.from({ length: 12 }, (_, i) => 0.1 * Math.sin(i))], ['b', Float32Array.from([0.1, -0.2, 0, 0.3])]]);
  const ex = data.train.slice(0, 8);
  const { grads } = await obj.lossAndGrads({ params, examples: ex });
  const h = 1e-2;
  for (const name of ['W', 'b']) {
    const p = params.get(name)!;
    for (const i of [0, 3]) {
      const keep = p[i];
      p[i] = keep + h; const up = (await obj.loss({ params, examples: ex })).loss;
      p[i] = keep - h; const dn = (await obj.loss({ params, examples: ex })).loss;
      p[i] = keep;
      const fd = (up - dn) / (2 * h);
      t.true(Math.abs(fd - grads.get(name)![i]) < 2e-3, `${name}[${i}]: fd ${fd} vs ${grads.get(name)![i]}`);
    }
  }
  await obj.release();
});

test('gradient accumulation (4 micro-batches of 2) equals one batch of 8', async (t) => {
  const obj = await softmaxObjective();
  const base: TrainOptions<Point> = { objective: obj, params: initParams(), train: data.train, epochs: 1, lr: 0.05, warmupRatio: 0, seed: 3, microBatchSize: 8 };
  const big = await train(base);
  const acc = await train({ ...base, microBatchSize: 2, gradAccumulation: 4 });
  t.is(big.steps, 5);
  t.is(acc.steps, 5);
  for (const k of ['W', 'b']) {
    const e = relErr(acc.params.get(k)!, big.params.get(k)!);
    t.true(e < 1e-5, `${k}: rel err ${e}`);
  }
  big.stepLosses.forEach((l, i) => t.true(Math.abs(l - acc.stepLosses[i]) < 1e-6, `step ${i + 1} loss ${l} vs ${acc.stepLosses[i]}`));
  // An uneven split (3 + 3 + 2) is weighted by example count, so it still matches.
  const uneven = await train({ ...base, microBatchSize: 3, gradAccumulation: 3 });
  const big9 = await train({ ...base, microBatchSize: 9 });
  t.true(relErr(uneven.params.get('W')!, big9.params.get('W')!) < 1e-5);
  await obj.release();
});

test('training lowers the validation loss and keeps the best-validation checkpoint', async (t) => {
  const obj = await softmaxObjective();
  const dir = await tmp(t);
  // 8 training points and a constant, high learning rate: the model overfits after a few epochs, so best ≠ last.
  const evals: { epoch: number; valLoss: number | null; best: boolean }[] = [];
  const r = await train({
    objective: obj, params: initParams(), shapes, train: points(8, 1), validation: data.validation, epochs: 6, lr: 0.3, warmupRatio: 0, minLr: 0.3,
    seed: 5, microBatchSize: 4, checkpointDir: dir, onEval: (e) => { evals.push(e); },
  });
  const before = await evaluateLoss({ objective: obj, params: initParams(), examples: data.validation, batchSize: 16 });
  const vals = r.history.map((h) => h.valLoss!);
  t.log(`val loss before ${before.toFixed(4)}, per epoch ${vals.map((v) => v.toFixed(4)).join(' ')}`);
  t.is(r.history.length, 6);
  t.true(Math.min(...vals) < before);
  const bestEpoch = vals.indexOf(Math.min(...vals)) + 1;
  t.is(r.best!.epoch, bestEpoch);
  t.is(r.best!.valLoss, Math.min(...vals));
  t.deepEqual(evals.filter((e) => e.best).at(-1)!.epoch, bestEpoch);
  // The saved best checkpoint holds exactly the parameters that scored best.
  const saved = await loadBestCheckpoint(dir);
  t.is(saved!.info.epoch, bestEpoch);
  t.deepEqual(saved!.params.get('W'), r.best!.params.get('W'));
  const again = await evaluateLoss({ objective: obj, params: saved!.params, examples: data.validation, batchSize: 4 }); // same batching as the run
  t.is(again, r.best!.valLoss);
  t.true(bestEpoch < 6 && vals[5] > r.best!.valLoss, 'the last epoch is worse than the best one');
  // Only one last-* and one best-* tensor file remain.
  const files = (await readdir(dir)).sort();
  t.is(files.filter((f) => f.startsWith('last-')).length, 1);
  t.is(files.filter((f) => f.startsWith('best-')).length, 1);
  t.true(files.includes('state.json') && files.includes('best.json'));
  await obj.release();
});

const resumable = (obj: Awaited<ReturnType<typeof softmaxObjective>>, dir?: string): TrainOptions<Point> => ({
  objective: obj, params: initParams(), shapes, train: data.train, validation: data.validation, epochs: 3, lr: 0.2, adamw: { weightDecay: 0.1 },
  seed: 11, microBatchSize: 3, gradAccumulation: 2, checkpointDir: dir, checkpointEvery: 2, maxGradNorm: 1,
});

test('resume from the last saved step reproduces the uninterrupted run bit for bit', async (t) => {
  const obj = await softmaxObjective();
  const full = await train(resumable(obj));
  t.is(full.totalSteps, 21); // ceil(40 / 6) = 7 steps per epoch × 3
  const dir = await tmp(t);
  // Crash after step 9 is done (step 9 is not a checkpoint step; the last save is step 8).
  const crash = new Error('simulated crash');
  await t.throwsAsync(train({ ...resumable(obj, dir), onStep: (s) => { if (s.step === 9) throw crash; } }), { is: crash });
  const ck = await loadCheckpoint(dir);
  t.is(ck!.state.step, 8);
  t.is(ck!.state.history.length, 1, 'epoch 1 was evaluated before the crash');
  t.is(ck!.m.get('W')!.length, 12);
  const resumed = await train(resumable(obj, dir));
  t.is(resumed.resumedFrom, 8);
  t.true(resumed.finished);
  for (const k of ['W', 'b']) t.deepEqual(resumed.params.get(k), full.params.get(k), `${k} bit for bit`);
  t.deepEqual(resumed.stepLosses, full.stepLosses);
  t.deepEqual(resumed.history, full.history);
  t.is(resumed.best!.step, full.best!.step);
  t.deepEqual(resumed.best!.params.get('W'), full.best!.params.get('W'));

  // stopAtStep at an epoch boundary (RNG moves to the next epoch's draw) then resume.
  const dir2 = await tmp(t);
  const part = await train({ ...resumable(obj, dir2), stopAtStep: 7 });
  t.false(part.finished);
  t.is(part.steps, 7);
  const rest = await train(resumable(obj, dir2));
  t.deepEqual(rest.params.get('W'), full.params.get('W'));
  t.deepEqual(rest.stepLosses, full.stepLosses);

  // Resuming with other settings is refused.
  await t.throwsAsync(train({ ...resumable(obj, dir2), lr: 0.3 }), { instanceOf: ConfigError, message: /lr = 0.2 but this run has 0.3/ });
  // A corrupted checkpoint is detected.
  const state = JSON.parse(await readFile(join(dir2, 'state.json'), 'utf8'));
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(dir2, state.file), 'garbage');
  await t.throwsAsync(train(resumable(obj, dir2)), { message: /sha256 .* does not match/ });
  await obj.release();
});

test('selection by a score: the best epoch by score (ties to the lower loss); a run resumed after a crash selects the same and keeps every epoch\'s score', async (t) => {
  const obj = await softmaxObjective();
  // A score that prefers epoch 2 (hand-picked: neither the last nor, necessarily, the lowest-loss epoch).
  const scores = [0.5, 0.9, 0.7];
  const seen: number[] = [];
  const selectScore = async (e: { epoch: number }) => (seen.push(e.epoch), scores[e.epoch - 1]);
  const full = await train({ ...resumable(obj), selectScore });
  t.deepEqual(seen, [1, 2, 3]);
  t.is(full.best!.epoch, 2);
  t.is(full.best!.score, 0.9);
  t.deepEqual(full.history.map((h) => h.score), scores);
  const dir = await tmp(t);
  // Crash in epoch 3 (after epoch 2's checkpoint): the resumed run never re-scores epochs 1–2.
  const crash = new Error('simulated crash');
  await t.throwsAsync(train({ ...resumable(obj, dir), selectScore, onStep: (s) => { if (s.step === 16) throw crash; } }), { is: crash });
  seen.length = 0;
  const resumed = await train({ ...resumable(obj, dir), selectScore });
  t.deepEqual(seen, [3]);
  t.is(resumed.best!.epoch, 2);
  t.deepEqual(resumed.best!.params.get('W'), full.best!.params.get('W'));
  t.deepEqual(resumed.history, full.history);
  // A tie in score goes to the lower validation loss.
  const tie = await train({ ...resumable(obj), selectScore: async () => 1 });
  const minLoss = Math.min(...tie.history.map((h) => h.valLoss!));
  t.is(tie.best!.valLoss, minLoss);
  await obj.release();
});

test('NaN in the loss or a gradient stops with a DataError naming the step', async (t) => {
  const obj = await softmaxObjective();
  // One example with a NaN feature; no shuffling, micro-batch 4 → it lands in step 3, micro-batch 1.
  const bad = data.train.map((p, i) => (i === 9 ? { ...p, x: [NaN, 0, 0] } : p));
  await t.throwsAsync(train({ objective: obj, params: initParams(), train: bad, epochs: 1, lr: 0.1, seed: 1, microBatchSize: 4, shuffle: false }), {
    instanceOf: DataError, message: /^training step 3 \(epoch 1, micro-batch 1\/1\): loss is NaN/,
  });
  // A finite loss with an infinite gradient (hand-made objective).
  const inf = {
    async lossAndGrads() { return { loss: 1, grads: new Map([['w', [0, Infinity]]]) }; },
  };
  await t.throwsAsync(train({ objective: inf, params: new Map([['w', new Float32Array(2)]]), train: [1, 2], epochs: 1, lr: 0.1, seed: 1, microBatchSize: 2 }), {
    instanceOf: DataError, message: /training step 1 .*gradient of "w" is Infinity at element 1/,
  });
  // A NaN validation loss names the epoch.
  const nanVal = data.validation.map((p, i) => (i === 0 ? { ...p, x: [0, NaN, 0] } : p));
  await t.throwsAsync(train({ objective: obj, params: initParams(), train: data.train, validation: nanVal, epochs: 1, lr: 0.1, seed: 1, microBatchSize: 8 }), {
    instanceOf: DataError, message: /validation after epoch 1 \(step 5\): loss is NaN/,
  });
  await obj.release();
});

test('bad options are ConfigErrors', async (t) => {
  const obj = await softmaxObjective();
  const o: TrainOptions<Point> = { objective: obj, params: initParams(), train: data.train, epochs: 1, lr: 0.1, seed: 1, microBatchSize: 4 };
  await t.throwsAsync(train({ ...o, epochs: 0 }), { instanceOf: ConfigError, message: /epochs is 0/ });
  await t.throwsAsync(train({ ...o, gradAccumulation: 1.5 }), { instanceOf: ConfigError });
  await t.throwsAsync(train({ ...o, lr: -1 }), { instanceOf: ConfigError });
  await t.throwsAsync(train({ ...o, train: [] }), { instanceOf: DataError });
  await obj.release();
});
