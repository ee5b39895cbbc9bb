import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** Shared helpers of the benchmarks. */

/** A positive integer from the environment (e.g. BENCH_N=2048), or the default. */
export function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const x = Number(v);
  if (!Number.isInteger(x) || x < 1) throw new Error(`${name}=${v}: expected a positive integer`);
  return x;
}

/** Run a benchmark side in its own process; its stdout and stderr are collected, and it is killed after `timeoutS`. */
export function runChild(cmd: string, args: string[], extraEnv: Record<string, string>, timeoutS: number): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...extraEnv } });
    let out = '', err = '';
    p.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    p.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    const timer = setTimeout(() => { err += `\nkilled after ${timeoutS} s`; p.kill('SIGKILL'); }, timeoutS * 1000);
    p.on('error', (e) => { err += e.message; });
    p.on('close', (code) => { clearTimeout(timer); resolve({ code, out, err }); });
  });
}

/** The last `n` lines of a child's output without warnings and progress bars (for error messages). */
export const lastLines = (s: string, n = 3): string => s.trim().split('\n').filter((l) => !/warn|Warning|it\/s\]/.test(l)).slice(-n).join(' | ');

/**
 * The CPU's SIMD extensions that matter for float32 GEMMs, from the first `flags` line of
 * /proc/cpuinfo (what MLAS and PyTorch's CPU kernels dispatch on), e.g.
 * "AVX-512 (avx512f avx512bw avx512vl avx512_vnni avx512_bf16 avx512_fp16), AVX2, FMA; no AMX".
 */
export function cpuVectorIsa(): string {
  let flags: Set<string>;
  try {
    flags = new Set((readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:\s*(.+)$/m)?.[1] ?? '').trim().split(/\s+/));
  } catch { return 'unknown (no /proc/cpuinfo)'; }
  const has = (f: string) => flags.has(f);
  const parts: string[] = [];
  const avx512 = ['avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16', 'avx512_fp16'].filter(has);
  if (avx512.length) parts.push(`AVX-512 (${avx512.join(' ')})`);
  if (has('avx2')) parts.push('AVX2');
  if (has('fma')) parts.push('FMA');
  if (has('avx_vnni')) parts.push('AVX-VNNI');
  if (!parts.length) parts.push(has('sse4_2') ? 'SSE4.2 only' : 'none of AVX2 / AVX-512');
  const amx = ['amx_tile', 'amx_bf16', 'amx_int8'].filter(has);
  return `${parts.join(', ')}; ${amx.length ? `AMX (${amx.join(' ')})` : 'no AMX'}`;
}
