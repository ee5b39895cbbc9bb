import { spawn } from 'node:child_process';

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
