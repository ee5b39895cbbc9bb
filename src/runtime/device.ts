/** Device strings: `cpu:N` or `cuda:N` (DESIGN.md contract 5). */
import { ConfigError } from '../errors.ts';

export interface Device { kind: 'cpu' | 'cuda'; index: number }

export function parseDevice(s: string): Device {
  const m = /^(cpu|cuda):(\d{1,4})$/.exec(typeof s === 'string' ? s.trim() : '');
  if (!m) throw new ConfigError(`device '${s}': expected 'cpu:N' or 'cuda:N' with N a non-negative integer (e.g. 'cpu:0', 'cuda:1')`);
  return { kind: m[1] as Device['kind'], index: Number(m[2]) };
}

export const formatDevice = (d: Device): string => `${d.kind}:${d.index}`;
