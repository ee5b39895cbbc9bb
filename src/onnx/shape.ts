/** Static shape helpers. Symbolic dims are trusted to agree at run time (see index.ts). */
import { DataError } from '../errors.ts';
import type { Dim, Shape } from './types.ts';

let unknownCounter = 0;
/** A fresh unknown dimension ('?<n>'): serialised without dim_value / dim_param. */
export const unknownDim = (): string => `?${unknownCounter++}`;
export const isUnknown = (d: Dim): boolean => typeof d === 'string' && d.startsWith('?');

/** Numpy broadcasting of two shapes. */
export function broadcast(a: Shape, b: Shape, what = 'broadcast'): Dim[] {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = i - (n - a.length) >= 0 ? a[i - (n - a.length)] : 1;
    const y = i - (n - b.length) >= 0 ? b[i - (n - b.length)] : 1;
    if (x === y || y === 1) out.push(x);
    else if (x === 1) out.push(y);
    else if (typeof x === 'number' && typeof y === 'number') {
      throw new DataError(`${what}: shapes [${a}] and [${b}] are not broadcastable (dim ${i}: ${x} vs ${y})`);
    } else if (typeof x === 'number') out.push(x);
    else if (typeof y === 'number') out.push(y);
    else out.push(isUnknown(x) ? y : x);
  }
  return out;
}

export function normAxis(axis: number, rank: number, what: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new DataError(`${what}: axis ${axis} is out of range for rank ${rank}`);
  }
  return a;
}

/** Product of dims, or null when any is symbolic. */
export function numel(shape: Shape): number | null {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number') return null;
    n *= d;
  }
  return n;
}

export function isStatic(shape: Shape): shape is readonly number[] {
  return shape.every((d) => typeof d === 'number');
}

export const shapeStr = (s: Shape): string => `[${s.join(', ')}]`;
