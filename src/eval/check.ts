import { DataError } from '../errors.ts';

export function checkNonEmpty(n: number, what: string): void {
  if (n === 0) throw new DataError(`${what}: empty set; expected at least one item`);
}

export function checkFiniteNumber(x: number, what: string): void {
  if (!Number.isFinite(x)) throw new DataError(`${what} is ${x}; expected a finite number`);
}
