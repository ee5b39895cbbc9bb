import test from 'ava';
import { parse } from 'yaml';
import { configYaml } from '../../src/tracking/publish.ts';
import { flatten } from '../../src/config/plan.ts';
import { headlineMetrics } from '../../src/results/headline.ts';

test('config.yaml: the flattened cell config comes back as the nested, typed config', (t) => {
  const config = { model: { id: 'smollm2', path: '/m' }, seed: 3, stages: { data: { trainSize: 64, noise: 0.2, tags: ['a', 'b'] }, ndr: { grouped: true } } };
  t.deepEqual(parse(configYaml(flatten(config))), config);
});

test('headline metrics: NDR of all layers per aggregation, downstream accuracy, perplexity, realised sparsity', (t) => {
  t.deepEqual(headlineMetrics('ndr', { ndr30: 0.5, 'ndr30.all.vote': 0.6, 'ndr30.WE.vote': 0.1, 'auc_ndr.all.mean-c': 0.7, 'cancellation.all': 0.2 }),
    { 'ndr.ndr30.all.vote': 0.6, 'ndr.auc_ndr.all.mean-c': 0.7 });
  t.deepEqual(headlineMetrics('benchmark_pruned', { acc: 0.5, acc_norm: 0.4, perplexity: 30, documents: 100 }),
    { 'benchmark_pruned.acc': 0.5, 'benchmark_pruned.acc_norm': 0.4, 'benchmark_pruned.perplexity': 30 });
  t.deepEqual(headlineMetrics('allocate_sparsity', { realised: 0.5, target: 0.5 }), { 'allocate_sparsity.realised': 0.5 });
  t.deepEqual(headlineMetrics('gradients', { samples: 10 }), {});
});
