/**
 * The influence stage with `validation: mean` (LayerIF's one score per training sample, SCIENCE.md §2
 * "Cost"): on the tiny model's gradient store, for TracIn, cosine and DataInf, every [1 × n] tensor
 * (dense units, the sparse word-embedding rows, the layers) equals the mean of the rows of the [m × n]
 * matrix the default computes; layer_scores gives the same scores from either; a projected store too;
 * the NDR pipeline refuses the setting at config time (the field named), the ndr stage at run time,
 * and the LayerIF pipeline takes it.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { influence, InfluenceSettings, type ScoresMeta } from '../../activities/influence.ts';
import { layer_scores, LayerScoreSettings, type LayerScoresJson } from '../../activities/layer-scores.ts';
import { gradients, GradientSettings } from '../../activities/gradients.ts';
import { ndr, NdrSettings } from '../../activities/ndr.ts';
import { finetune, FinetuneSettings } from '../../activities/finetune.ts';
import type { ArtifactRef, ArtifactStore } from '../../src/store/artifacts.ts';
import { parseSafetensorsBytes, rawToFloat32 } from '../../src/weights/safetensors.ts';
import { parseSweep } from '../../src/config/sweep.ts';
import { SweepConfigError } from '../../src/config/errors.ts';
import { ConfigError } from '../../src/errors.ts';
import { ndrDef } from '../../pipelines/ndr.ts';
import { layerifDef } from '../../pipelines/layerif.ts';
import { ctxOf, run, tinySweepYaml, tinyUpstream } from './_tiny-stages.ts';

async function scores(store: ArtifactStore, ref: ArtifactRef): Promise<{ meta: ScoresMeta; tensors: Map<string, { shape: number[]; data: Float32Array }> }> {
  const meta = await store.readJson<ScoresMeta>(ref, 'scores.json');
  const { tensors } = parseSafetensorsBytes(await store.read(ref, 'scores.safetensors'), 'scores');
  return { meta, tensors: new Map([...tensors].map(([name, x]) => [name, { shape: [...x.shape], data: rawToFloat32(x, name) }])) };
}

test('validation mean: every tensor is the mean of the matrix rows (TracIn, cosine, DataInf; dense, WE, layers; plain and projected store); layer_scores agrees', async (t) => {
  const { home, store, slice, ds } = await tinyUpstream(t, 'lf-mean-val-');
  // Three epochs, so that LoRA A's gradients are not all zero (B starts at zero) and DataInf's λ > 0.
  const ft = await run(finetune, ctxOf(store, home, 'finetune', FinetuneSettings.parse({ epochs: 3, batchSize: 4, microBatchSize: 4, maxLength: 12 }), slice, { data: ds }));
  const full = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 3 }), slice, { data: ds, finetune: ft }));
  const proj = await run(gradients, ctxOf(store, home, 'gradients', GradientSettings.parse({ shardSize: 3, projection: { factor: 4, seed: 1, matrix: 'sjlt' } }), slice, { data: ds, finetune: ft }));
  for (const [store_, grads] of [['full', full], ['projected', proj]] as const) {
    for (const method of ['tracin', 'cosine', 'datainf'] as const) {
      const sl = { ...slice, method: { id: method, influence: method, dampingScale: 0.1 } };
      const each = await run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({}), sl, { gradients: grads }));
      const mean = await run(influence, ctxOf(store, home, 'influence', InfluenceSettings.parse({ validation: 'mean' }), sl, { gradients: grads }));
      const [E, M] = [await scores(store, each), await scores(store, mean)];
      t.is(M.meta.validation, 'mean');
      t.is(E.meta.validation, undefined);
      t.is(M.meta.m, E.meta.m);
      const { m, n } = E.meta;
      t.true(m > 1 && n > 1);
      t.deepEqual([...M.tensors.keys()].sort(), [...E.tensors.keys()].sort());
      t.true([...M.tensors.keys()].some((k) => k.includes('embed_tokens')), 'the WE unit is there');
      for (const [name, e] of E.tensors) {
        const got = M.tensors.get(name)!;
        t.deepEqual(got.shape, [1, n], name);
        const want = Array.from({ length: n }, (_, k) => { let s = 0; for (let j = 0; j < m; j++) s += e.data[j * n + k]; return s / m; });
        const scale = Math.max(1e-30, ...want.map(Math.abs));
        const off = Math.max(...want.map((w, k) => Math.abs(got.data[k] - w))) / scale;
        t.true(off < 2e-5, `${store_} ${method} ${name}: off by ${off} of the largest score`);
      }
      // lambda per unit is the matrix path's
      const lam = new Map(E.meta.units.map((u) => [u.unit, u.lambda]));
      t.true(M.meta.units.every((u) => u.lambda === lam.get(u.unit) || Math.abs(u.lambda! / lam.get(u.unit)! - 1) < 1e-12), `${store_} ${method}: λ`);
      if (store_ === 'full') {
        const ls = async (inf: ArtifactRef) => JSON.parse((await layer_scores(ctxOf(store, home, 'layer_scores', LayerScoreSettings.parse({}), sl, { influence: inf }))).files['layer-scores.json'] as string) as LayerScoresJson;
        const [le, lm] = [await ls(each), await ls(mean)];
        t.is(lm.layers.length, le.layers.length);
        const top = Math.max(1e-30, ...le.layers.map((l) => Math.abs(l.score)));
        le.layers.forEach((l, i) => t.true(Math.abs(lm.layers[i].score - l.score) <= 2e-5 * top, `${method} layer ${l.layer}: ${lm.layers[i].score} vs ${l.score}`));
        if (method === 'tracin') {
          const err = await ndr(ctxOf(store, home, 'ndr', NdrSettings.parse({}), sl, { data: ds, finetune: ft, gradients: grads, influence: mean })).then(() => undefined, (x: unknown) => x);
          t.true(err instanceof ConfigError && /validation: mean/.test(err.message), String(err));
        }
      }
    }
  }
});

test('config: the NDR pipeline refuses influence validation mean, naming the field; LayerIF takes it and keys on it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lf-mean-val-cfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const yaml = (pipeline: string, inf: string) => tinySweepYaml(pipeline, { influence: inf });
  const err = await parseSweep(join(dir, 'sweep.yaml'), yaml('ndr', '{ validation: mean }'), { ndr: ndrDef }).then(() => undefined, (e: unknown) => e);
  t.true(err instanceof SweepConfigError);
  t.regex((err as SweepConfigError).message, /stages\.influence\.validation.*one row per influence sample/);
  const bad = await parseSweep(join(dir, 'sweep.yaml'), yaml('layerif', '{ validation: average }'), { layerif: layerifDef }).then(() => undefined, (e: unknown) => e);
  t.true(bad instanceof SweepConfigError);
  t.regex((bad as SweepConfigError).message, /stages\.influence\.validation.*expected each .* or mean/);
  const ok = await parseSweep(join(dir, 'sweep.yaml'), yaml('layerif', '{ validation: mean }'), { layerif: layerifDef });
  t.truthy(ok);
});
