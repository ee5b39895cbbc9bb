/** Shared helpers of the benchmarks. */

/** A positive integer from the environment (e.g. BENCH_N=2048), or the default. */
export function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const x = Number(v);
  if (!Number.isInteger(x) || x < 1) throw new Error(`${name}=${v}: expected a positive integer`);
  return x;
}
