/**
 * Cancellation effect of a unit's training gradients (SCIENCE.md §4):
 *   C = Σ_i Σ_p |g_{i,p}| / Σ_p |Σ_i g_{i,p}|
 * C ≥ 1; large C means per-sample gradients largely cancel when summed.
 */
import { DataError } from '../errors.ts';
import { checkUnitGradients, type UnitGradients } from './types.ts';

/** Running accumulator so the measure can be computed over streamed shards. */
export class CancellationAccumulator {
  private absSum = 0;
  private colSum: Float64Array | undefined;
  private rows = 0;
  add(chunk: UnitGradients): void {
    checkUnitGradients(chunk, 'gradients');
    const { n, d, data } = chunk;
    if (!this.colSum) this.colSum = new Float64Array(d);
    if (this.colSum.length !== d) throw new DataError(`gradients (unit ${chunk.unit}): chunk has d=${d}; earlier chunks had d=${this.colSum.length}`);
    for (let i = 0; i < n * d; i++) {
      this.absSum += Math.abs(data[i]);
      this.colSum[i % d] += data[i];
    }
    this.rows += n;
  }
  /** Numerator Σ_i Σ_p |g_{i,p}| and denominator Σ_p |Σ_i g_{i,p}|: a group of units adds both up (C of the group). */
  parts(): { numerator: number; denominator: number } {
    let den = 0;
    for (const x of this.colSum ?? []) den += Math.abs(x);
    return { numerator: this.absSum, denominator: den };
  }
  value(): number {
    if (!this.colSum || this.rows === 0) throw new DataError('cancellation effect: no gradient rows; expected n ≥ 1');
    let den = 0;
    for (const x of this.colSum) den += Math.abs(x);
    if (!(den > 0)) throw new DataError('cancellation effect: the summed gradient is exactly zero, so C is undefined (division by 0)');
    return this.absSum / den;
  }
}

/** C for one in-memory [n × d] gradient matrix. */
export function cancellationEffect(grads: UnitGradients): number {
  const acc = new CancellationAccumulator();
  acc.add(grads);
  return acc.value();
}
