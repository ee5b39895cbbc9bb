/**
 * A cell's headline metrics: the few numbers a researcher compares cells by (NDR@30 / AUC-NDR of
 * all layers per aggregation, downstream accuracy, perplexity, realised sparsity), named
 * `<stage>.<metric>`. They are copied up to the cell's parent run in MLflow, so the runs table
 * compares cells directly, and they are the default columns of `layerflow compare`.
 */

/** Which of a stage's metrics are headline metrics. */
const HEADLINE: Record<string, (metric: string) => boolean> = {
  ndr: (m) => /^(ndr30|auc_ndr)\.all\.[a-z-]+$/.test(m),
  benchmark: (m) => m === 'accuracy_retrained' || m === 'accuracy_noisy' || m === 'accuracy_gain',
  benchmark_moe: (m) => m === 'acc' || m === 'acc_norm' || m === 'exact_match',
  benchmark_pruned: (m) => m === 'acc' || m === 'acc_norm' || m === 'perplexity' || m === 'exact_match',
  allocate_sparsity: (m) => m === 'realised',
  prune: (m) => m === 'realised_mean',
};

/** The headline metrics among one stage's metrics, named `<stage>.<metric>`. */
export function headlineMetrics(stage: string, metrics: Record<string, number>): Record<string, number> {
  const pick = HEADLINE[stage];
  if (!pick) return {};
  return Object.fromEntries(Object.entries(metrics).filter(([k, v]) => pick(k) && Number.isFinite(v)).map(([k, v]) => [`${stage}.${k}`, v]));
}

/**
 * Which of a stage's metric series are per-layer quantities (step = layer index): layer scores,
 * NDR@30 of each block per aggregation, experts, sparsity ratios and realised sparsity per layer.
 * Training curves (step = optimiser step) are not: they stay on the stage's nested run.
 */
const LAYER_SERIES: Record<string, (series: string) => boolean> = {
  layer_scores: (s) => s === 'layer_score',
  ndr: (s) => /^ndr30_by_layer\.[a-z-]+$/.test(s),
  allocate_experts: (s) => s === 'experts',
  allocate_sparsity: (s) => s === 'ratio',
  prune: (s) => s === 'realised',
};

/**
 * The per-layer series among one stage's series, named `<stage>.<series>` like headline metrics:
 * copied up to the cell's parent run (step = layer index), so MLflow's charts overlay the cells.
 */
export function layerSeries(stage: string, series: Record<string, number[]>): Record<string, number[]> {
  const pick = LAYER_SERIES[stage];
  if (!pick) return {};
  return Object.fromEntries(Object.entries(series).filter(([k, v]) => pick(k) && Array.isArray(v) && v.length > 0).map(([k, v]) => [`${stage}.${k}`, v]));
}
