/**
 * The terminal results tables (`layerflow results`, the end of `layerflow run`) are rendered from
 * the same rows as the HTML report's tables; this pins their text byte for byte to what it was
 * before the rows became data (expected strings captured from the previous implementation on these
 * fixtures), including partly finished sweeps. One deliberate change since: a LayerIF pruning row
 * names its layer-score variant (`layerif +VE / wanda / S=0.5`), so a sweep over variants no longer
 * folds the TOP25 rows into the +VE ones. Added since: the pruned models' perplexity table after
 * the acc tables, and the base model's reference row where a sweep ran `benchmark_base`.
 */
import test from 'ava';
import { layerifResults, ndrResults, layerifTables, layerScoreTables, ndrTables, tableText, REFERENCE_LABEL } from '../../src/cli/results.ts';
import { collectResults } from '../../src/results/collect.ts';
import { layerifFixture, ndrFixture } from './fixture.ts';

const LAYERIF = `LoRA-MoE zero-shot accuracy (acc), mean±std over seeds; * = differs from the best row by more than both spreads
  allocation                 a            b           mean
  ─────────────    ───────────  ───────────  ─────────────
  layerif +VE      0.615±0.007  0.665±0.007    0.640±0.007
  layerif TOP25    0.595±0.007  0.645±0.007  0.620±0.007 *
  uniform          0.535±0.007  0.585±0.007  0.560±0.007 *
  ordering by mean: layerif +VE 0.640 > layerif TOP25 0.620 > uniform 0.560; 2 row(s) separated from the best beyond the spread
Pruned-model zero-shot accuracy (acc), mean±std over seeds; * = differs from the best row by more than both spreads
  allocation                                 a            b           mean
  ─────────────────────────────    ───────────  ───────────  ─────────────
  layerif +VE / wanda / S=0.5      0.468±0.004  0.497±0.004    0.482±0.004
  owl / wanda / S=0.5              0.408±0.004  0.438±0.004  0.423±0.004 *
  layerif TOP25 / wanda / S=0.5    0.468±0.004  0.497±0.004    0.482±0.004
  ordering by mean: layerif +VE / wanda / S=0.5 0.482 > layerif TOP25 / wanda / S=0.5 0.482 > owl / wanda / S=0.5 0.423; 1 row(s) separated from the best beyond the spread`;

const LAYERIF_NO_PRUNED = `LoRA-MoE zero-shot accuracy (acc), mean±std over seeds; * = differs from the best row by more than both spreads
  allocation                 a            b           mean
  ─────────────    ───────────  ───────────  ─────────────
  layerif +VE      0.615±0.007  0.665±0.007    0.640±0.007
  layerif TOP25    0.595±0.007  0.645±0.007  0.620±0.007 *
  uniform          0.535±0.007  0.585±0.007  0.560±0.007 *
  ordering by mean: layerif +VE 0.640 > layerif TOP25 0.620 > uniform 0.560; 2 row(s) separated from the best beyond the spread`;

// The pruned models' perplexity, printed after the acc tables since the sweep's end showed only acc:
// lower is better, so the best row is the lowest mean and owl (33.5 against 31.5, spreads 0.707 each) is marked.
const PPL = `Pruned-model perplexity (held-out text; lower is better), mean±std over seeds; * = differs from the best row by more than both spreads
  allocation                                  a             b            mean
  ─────────────────────────────    ────────────  ────────────  ──────────────
  layerif +VE / wanda / S=0.5      31.500±0.707  31.500±0.707    31.500±0.707
  owl / wanda / S=0.5              33.500±0.707  33.500±0.707  33.500±0.707 *
  layerif TOP25 / wanda / S=0.5    31.500±0.707  31.500±0.707    31.500±0.707
  ordering by mean: layerif +VE / wanda / S=0.5 31.500 < layerif TOP25 / wanda / S=0.5 31.500 < owl / wanda / S=0.5 33.500; 1 row(s) separated from the best beyond the spread`;

const NDR = `NDR@30 per method × aggregation × layer group (mean±std over seeds; fraction of the noisy samples among the 30% ranked most harmful; random ordering 0.300±0.000)
  method   aggregation           WE   blocks 0-1   blocks 2-3           CL          all
  ───────  ───────────  ───────────  ───────────  ───────────  ───────────  ───────────
  tracin   mean         0.405±0.007  0.465±0.007  0.525±0.007  0.585±0.007  0.645±0.007
  tracin   rank         0.435±0.007  0.495±0.007  0.555±0.007  0.615±0.007  0.675±0.007
  tracin   vote         0.465±0.007  0.525±0.007  0.585±0.007  0.645±0.007  0.705±0.007
  datainf  mean         0.315±0.007  0.375±0.007  0.435±0.007  0.495±0.007  0.555±0.007
  datainf  rank         0.345±0.007  0.405±0.007  0.465±0.007  0.525±0.007  0.585±0.007
  datainf  vote         0.375±0.007  0.435±0.007  0.495±0.007  0.555±0.007  0.615±0.007
AUC-NDR (area under the whole NDR curve; 1 = every noisy sample ranked first)
  method   aggregation           WE   blocks 0-1   blocks 2-3           CL          all
  ───────  ───────────  ───────────  ───────────  ───────────  ───────────  ───────────
  tracin   mean         0.515±0.007  0.515±0.007  0.515±0.007  0.515±0.007  0.515±0.007
  tracin   rank         0.565±0.007  0.565±0.007  0.565±0.007  0.565±0.007  0.565±0.007
  tracin   vote         0.615±0.007  0.615±0.007  0.615±0.007  0.615±0.007  0.615±0.007
  datainf  mean         0.515±0.007  0.515±0.007  0.515±0.007  0.515±0.007  0.515±0.007
  datainf  rank         0.565±0.007  0.565±0.007  0.565±0.007  0.565±0.007  0.565±0.007
  datainf  vote         0.615±0.007  0.615±0.007  0.615±0.007  0.615±0.007  0.615±0.007
  cancellation effect C    WE   blocks 0-1   blocks 2-3           CL          all
  ─────────────────────    ──  ───────────  ───────────  ───────────  ───────────
  (training gradients)      —  1.115±0.006  1.215±0.006  1.315±0.006  1.415±0.006
Retraining without the 30% lowest-scored samples (evaluation-set accuracy; the ground truth NDR is compared with)
  method   aggregation  NDR@30 (all)  retrained acc  noisy-model acc
  ───────  ───────────  ────────────  ─────────────  ───────────────
  tracin   mean          0.645±0.007    0.765±0.007      0.715±0.007
  tracin   vote          0.705±0.007    0.785±0.007      0.715±0.007
  datainf  mean          0.555±0.007    0.765±0.007      0.715±0.007
  datainf  vote          0.615±0.007    0.785±0.007      0.715±0.007`;

const NDR_NO_BENCHMARK = `NDR@30 per method × aggregation × layer group (mean±std over seeds; fraction of the noisy samples among the 30% ranked most harmful; random ordering 0.300±0.000)
  method   aggregation           WE   blocks 0-1   blocks 2-3           CL          all
  ───────  ───────────  ───────────  ───────────  ───────────  ───────────  ───────────
  tracin   mean         0.405±0.007  0.465±0.007  0.525±0.007  0.585±0.007  0.645±0.007
  tracin   rank         0.435±0.007  0.495±0.007  0.555±0.007  0.615±0.007  0.675±0.007
  tracin   vote         0.465±0.007  0.525±0.007  0.585±0.007  0.645±0.007  0.705±0.007
  datainf  mean         0.315±0.007  0.375±0.007  0.435±0.007  0.495±0.007  0.555±0.007
  datainf  rank         0.345±0.007  0.405±0.007  0.465±0.007  0.525±0.007  0.585±0.007
  datainf  vote         0.375±0.007  0.435±0.007  0.495±0.007  0.555±0.007  0.615±0.007
AUC-NDR (area under the whole NDR curve; 1 = every noisy sample ranked first)
  method   aggregation           WE   blocks 0-1   blocks 2-3           CL          all
  ───────  ───────────  ───────────  ───────────  ───────────  ───────────  ───────────
  tracin   mean         0.515±0.007  0.515±0.007  0.515±0.007  0.515±0.007  0.515±0.007
  tracin   rank         0.565±0.007  0.565±0.007  0.565±0.007  0.565±0.007  0.565±0.007
  tracin   vote         0.615±0.007  0.615±0.007  0.615±0.007  0.615±0.007  0.615±0.007
  datainf  mean         0.515±0.007  0.515±0.007  0.515±0.007  0.515±0.007  0.515±0.007
  datainf  rank         0.565±0.007  0.565±0.007  0.565±0.007  0.565±0.007  0.565±0.007
  datainf  vote         0.615±0.007  0.615±0.007  0.615±0.007  0.615±0.007  0.615±0.007
  cancellation effect C    WE   blocks 0-1   blocks 2-3           CL          all
  ─────────────────────    ──  ───────────  ───────────  ───────────  ───────────
  (training gradients)      —  1.115±0.006  1.215±0.006  1.315±0.006  1.415±0.006
Retraining without the 30% lowest-scored samples (evaluation-set accuracy; the ground truth NDR is compared with)
  method   aggregation  NDR@30 (all)  retrained acc  noisy-model acc
  ───────  ───────────  ────────────  ─────────────  ───────────────
  tracin   mean          0.645±0.007              —                —
  tracin   vote          0.705±0.007              —                —
  datainf  mean          0.555±0.007              —                —
  datainf  vote          0.615±0.007              —                —`;

test('LayerIF tables: the same text as before, with and without the pruning branch; the pruned perplexity table follows the acc tables', async (t) => {
  const full = await layerifFixture();
  t.teardown(full.cleanup);
  // After the accuracy tables come the perplexity table, then the layer-score tables (checked by hand in the next test).
  const layerText = (await layerScoreTables(await collectResults(full.env, full.plan))).map(tableText);
  t.is(layerText.length, 2);
  t.is(await layerifResults(full.env, full.plan), [LAYERIF, PPL, ...layerText].join('\n'));
  const ppl = await layerifTables(await collectResults(full.env, full.plan), 'perplexity');
  t.deepEqual(ppl.map((x) => x.stage), ['benchmark_pruned'], 'perplexity is measured for pruned models only');
  t.is(ppl.map(tableText).join('\n'), PPL);
  t.is(await ndrResults(full.env, full.plan), '', 'no NDR tables in a LayerIF sweep');
  const part = await layerifFixture(['benchmark_pruned']);
  t.teardown(part.cleanup);
  t.is(await layerifResults(part.env, part.plan), [LAYERIF_NO_PRUNED, ...layerText].join('\n'));
  // The text is the tables' data rendered: joined tableText of layerifTables.
  const tables = await layerifTables(await collectResults(full.env, full.plan));
  t.deepEqual(tables.map((x) => x.stage), ['benchmark_moe', 'benchmark_pruned']);
  t.is(tables.map(tableText).join('\n'), LAYERIF);
  t.deepEqual(tables[0].header, ['allocation', '', 'a', 'b', 'mean']);
  t.deepEqual(tables[0].rows[0], ['layerif +VE', '', '0.615±0.007', '0.665±0.007', '0.640±0.007']);
});

test('layer-score tables: per model × method × variant, a row per task with its top layers and depth profile (hand-computed)', async (t) => {
  const full = await layerifFixture();
  t.teardown(full.cleanup);
  const tables = await layerScoreTables(await collectResults(full.env, full.plan));
  t.deepEqual(tables.map((x) => x.title!.replace(/^Layer scores S_l, model \S+ · /, '').replace(/ \(.*$/, '')), ['datainf · +VE', 'datainf · TOP25']);
  // S_l = (l + 1) · (1 for a, 2 for b) · (½ for TOP25) + seed / 10, seeds 1 and 2 (mean + 0.15); 4 layers, one per quarter.
  t.deepEqual(tables[0].rows, [
    ['a', '2', '4', '3, 2, 1', '0.28', '0.52', '0.76', '1.00'], // 1.15 2.15 3.15 4.15 over 4.15
    ['b', '2', '4', '3, 2, 1', '0.26', '0.51', '0.75', '1.00'], // 2.15 4.15 6.15 8.15 over 8.15
  ]);
  t.deepEqual(tables[1].rows, [
    ['a', '2', '4', '3, 2, 1', '0.30', '0.53', '0.77', '1.00'], // 0.65 1.15 1.65 2.15 over 2.15
    ['b', '2', '4', '3, 2, 1', '0.28', '0.52', '0.76', '1.00'],
  ]);
  const none = await layerifFixture(['layer_scores']);
  t.teardown(none.cleanup);
  t.deepEqual(await layerScoreTables(await collectResults(none.env, none.plan)), []);
});

test('NDR tables: the same text as before, with and without the retraining benchmark', async (t) => {
  const full = await ndrFixture();
  t.teardown(full.cleanup);
  t.is(await ndrResults(full.env, full.plan), NDR);
  t.is(await layerifResults(full.env, full.plan), '', 'no LayerIF tables in an NDR sweep');
  const part = await ndrFixture(['benchmark']);
  t.teardown(part.cleanup);
  t.is(await ndrResults(part.env, part.plan), NDR_NO_BENCHMARK);
  const tables = await ndrTables(await collectResults(full.env, full.plan));
  t.deepEqual(tables.map((x) => x.name), ['NDR@30', 'AUC-NDR', 'Cancellation effect per layer group', 'Retraining']);
  t.is(tables.map(tableText).join('\n'), NDR);
});

test('with one seed per row nothing is marked beyond the spread, and the note says why', async (t) => {
  const full = await layerifFixture();
  t.teardown(full.cleanup);
  const all = await collectResults(full.env, full.plan);
  const oneSeed = { ...all, cells: all.cells.filter((c) => c.axes.seed === 1), plan: { ...all.plan, cells: all.plan.cells.filter((c) => c.axes.seed === 1) } };
  const tables = await layerifTables(oneSeed, 'acc');
  t.true(tables.length > 0);
  for (const tb of tables) {
    for (const row of tb.rows) t.false(row[row.length - 1].endsWith('*'), `${tb.name}: ${row.join(' ')}`);
    t.regex(tb.note ?? '', /one seed per row: no spread to judge the differences by/);
  }
});

test('benchmark_base gives each LayerIF table a reference row (base / dense model): first, not ranked or marked, compared with the best row in the note', async (t) => {
  const full = await layerifFixture();
  t.teardown(full.cleanup);
  // The base model's results: one per task × seed (every allocation row of a task × seed shares the key).
  const baseAcc = (task: string, seed: number) => 0.45 + (task === 'b' ? 0.05 : 0) + seed * 0.01;
  const done = new Set<string>();
  for (const c of full.plan.cells) {
    const s = c.stages.find((x) => x.name === 'benchmark_base')!;
    if (done.has(s.key)) continue;
    done.add(s.key);
    const seed = Number(c.params.seed);
    await full.store.commit({ key: s.key, parts: s.parts, kind: s.kind, files: { 'benchmark.json': '{}' }, metrics: { acc: baseAcc(c.params['task.id'], seed), acc_norm: 0.5, perplexity: 28 + seed, documents: 50 } });
  }
  t.is(done.size, 4, 'one benchmark_base per task × seed');
  const r = await collectResults(full.env, full.plan);
  const [moe, pruned] = await layerifTables(r, 'acc');
  // a: 0.46, 0.47; b: 0.51, 0.52 → per-seed means 0.485, 0.495.
  t.deepEqual(moe.rows[0], [REFERENCE_LABEL.benchmark_moe, '', '0.465±0.007', '0.515±0.007', '0.490±0.007']);
  t.deepEqual(pruned.rows[0], [REFERENCE_LABEL.benchmark_pruned, '', '0.465±0.007', '0.515±0.007', '0.490±0.007']);
  // The allocation rows, their marks and the ordering are what they were without the reference.
  t.is(tableText({ ...moe, rows: moe.rows.slice(1), note: moe.note!.replace(/; reference .*$/, '') }), LAYERIF_NO_PRUNED);
  t.false(moe.note!.includes(REFERENCE_LABEL.benchmark_moe + ' 0.490 <'), 'the reference is not in the ordering');
  // MoE best 0.640±0.007 vs 0.490±0.007: better beyond the spreads; pruned best 0.482±0.004 vs 0.490±0.007: within.
  t.regex(moe.note!, /; reference base model \(no fine-tuning\) 0\.490 \(not ranked\): the best row is better by more than both spreads$/);
  t.regex(pruned.note!, /; reference dense base model \(S=0\) 0\.490 \(not ranked\): the best row is within the spreads of it$/);
  // Perplexity: dense 29.5±0.707 against the best pruned 31.5±0.707 — the pruned models are worse (lower is better).
  const [ppl] = await layerifTables(r, 'perplexity');
  t.deepEqual(ppl.rows[0], [REFERENCE_LABEL.benchmark_pruned, '', '29.500±0.707', '29.500±0.707', '29.500±0.707']);
  t.is(ppl.rows.filter((x) => x[x.length - 1].endsWith('*')).length, 1, 'only owl is marked, never the reference');
  t.regex(ppl.note!, /the best row is worse by more than both spreads$/);
  // In the terminal text too, and with one seed the note says the reference cannot be judged.
  const text = await layerifResults(full.env, full.plan);
  t.regex(text, /\n {2}base model \(no fine-tuning\) +0\.465±0\.007 +0\.515±0\.007 +0\.490±0\.007\n/);
  t.regex(text, /\n {2}dense base model \(S=0\) +29\.500±0\.707/);
  const oneSeed = { ...r, cells: r.cells.filter((c) => c.axes.seed === 1) };
  for (const tb of await layerifTables(oneSeed, 'acc')) t.regex(tb.note!, /cannot be judged against it with one seed$/);
});
