/**
 * AdamW (Loshchilov & Hutter, decoupled weight decay) as pure functions over Float32Arrays, the
 * same update as torch.optim.AdamW (amsgrad off, maximize off):
 *
 *   θ ← θ · (1 − lr·wd)                       (decoupled decay, before the moment update)
 *   m ← β1·m + (1 − β1)·g
 *   v ← β2·v + (1 − β2)·g²
 *   θ ← θ − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
 *
 * t is the 1-based step count after this update. Arithmetic is float64 per element, results are
 * stored as float32 (so a run is reproducible bit for bit from a float32 checkpoint).
 */
import { ConfigError, DataError } from '../errors.ts';

export interface AdamWConfig {
  /** β1, default 0.9. */
  beta1?: number;
  /** β2, default 0.999. */
  beta2?: number;
  /** ε, default 1e-8. */
  eps?: number;
  /** Decoupled weight decay coefficient, default 0.01 (torch default). */
  weightDecay?: number;
}

export interface AdamWHyper { beta1: number; beta2: number; eps: number; weightDecay: number }

export function adamwHyper(c: AdamWConfig = {}): AdamWHyper {
  const h = { beta1: c.beta1 ?? 0.9, beta2: c.beta2 ?? 0.999, eps: c.eps ?? 1e-8, weightDecay: c.weightDecay ?? 0.01 };
  if (!(h.beta1 >= 0 && h.beta1 < 1)) throw new ConfigError(`adamw: beta1 is ${h.beta1}; expected 0 <= beta1 < 1`);
  if (!(h.beta2 >= 0 && h.beta2 < 1)) throw new ConfigError(`adamw: beta2 is ${h.beta2}; expected 0 <= beta2 < 1`);
  if (!(h.eps > 0)) throw new ConfigError(`adamw: eps is ${h.eps}; expected a positive number`);
  if (!(h.weightDecay >= 0)) throw new ConfigError(`adamw: weightDecay is ${h.weightDecay}; expected >= 0`);
  return h;
}

export interface AdamWStepArgs extends AdamWConfig {
  param: Float32Array;
  grad: ArrayLike<number>;
  /** First and second moments before this step (zeros at the start). */
  m: Float32Array;
  v: Float32Array;
  /** 1-based step number of this update (bias correction uses βᵗ). */
  t: number;
  lr: number;
  /** Name in error messages. */
  name?: string;
}

/** One AdamW update of one tensor. Returns new arrays; the inputs are not modified. */
export function adamwStep(a: AdamWStepArgs): { param: Float32Array; m: Float32Array; v: Float32Array } {
  const out = { param: new Float32Array(a.param.length), m: new Float32Array(a.m.length), v: new Float32Array(a.v.length) };
  adamwStepInto(a, out);
  return out;
}

/** Same as adamwStep, writing into `out` (which may alias the inputs: the update is element-wise). */
export function adamwStepInto(a: AdamWStepArgs, out: { param: Float32Array; m: Float32Array; v: Float32Array }): void {
  const { beta1: b1, beta2: b2, eps, weightDecay: wd } = adamwHyper(a);
  const n = a.param.length, what = a.name ?? 'parameter';
  if (a.grad.length !== n || a.m.length !== n || a.v.length !== n) {
    throw new DataError(`adamw: ${what} has ${n} elements but grad/m/v have ${a.grad.length}/${a.m.length}/${a.v.length}`);
  }
  if (!Number.isInteger(a.t) || a.t < 1) throw new ConfigError(`adamw: step t is ${a.t}; expected an integer >= 1`);
  if (!(a.lr >= 0) || !Number.isFinite(a.lr)) throw new ConfigError(`adamw: lr is ${a.lr}; expected a finite number >= 0`);
  const decay = 1 - a.lr * wd;
  const bc1 = 1 - b1 ** a.t, bc2Sqrt = Math.sqrt(1 - b2 ** a.t);
  const stepSize = a.lr / bc1;
  for (let i = 0; i < n; i++) {
    const g = a.grad[i];
    const m = b1 * a.m[i] + (1 - b1) * g;
    const v = b2 * a.v[i] + (1 - b2) * g * g;
    // Store the moments as float32 first and use the stored values, so a resumed run (moments
    // read back from float32) computes exactly the same update.
    out.m[i] = m;
    out.v[i] = v;
    const p = a.param[i] * decay;
    out.param[i] = p - stepSize * out.m[i] / (Math.sqrt(out.v[i]) / bc2Sqrt + eps);
  }
}
