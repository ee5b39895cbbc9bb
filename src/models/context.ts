/**
 * Graph-building context shared by the architectures: weights become graph inputs (default; one
 * graph serves many checkpoints) or initializers (when `initializers` has them), named by their HF /
 * PEFT keys. Parameters listed in `perExample` are used through a batch-expanded copy [B, ...shape]
 * so the gradient w.r.t. that copy is the per-example gradient.
 */
import { ConfigError, DataError } from '../errors.ts';
import * as O from '../onnx/index.ts';
import type { GraphBuilder, Value } from '../onnx/index.ts';
import type { ModelConfig } from '../weights/hf-config.ts';
import { peftKey } from '../weights/peft.ts';
import { loraModules, loraScaling, type LinearModule, type LoraSpec } from './lora.ts';
import { moeDelta, moeModules, type MoeSpec } from './moe.ts';

export type FloatDType = 'float32' | 'float64';
/** Host weights by graph input name: HF keys ("model.layers.0.self_attn.q_proj.weight") or PEFT keys. */
export type WeightMap = Map<string, { dims: number[]; data: Float32Array | Float64Array }>;

export interface ContextOptions {
  config: ModelConfig;
  lora?: LoraSpec;
  moe?: MoeSpec;
  dtype?: FloatDType;
  /** Parameter names to batch-expand (per-example gradients). */
  perExample?: Iterable<string>;
  /** Bake these weights into the model as initializers instead of graph inputs (keep under ~2 GiB). */
  initializers?: WeightMap;
  /** Output the per-input-feature sum of squares of every linear module's input (Wanda calibration). */
  activationNorms?: boolean;
}

export class ModelContext {
  readonly g: GraphBuilder;
  readonly config: ModelConfig;
  readonly dtype: FloatDType;
  readonly lora?: LoraSpec;
  readonly moe?: MoeSpec;
  /** Parameters (graph inputs or initializers) by name, with their shapes. */
  readonly params = new Map<string, Value>();
  /** Batch-expanded copies [B, ...shape] by parameter name. */
  readonly expanded = new Map<string, Value>();
  /** Sum over (batch, tokens) of x² per input feature [in], by module name. */
  readonly actSumSq = new Map<string, Value>();
  /** Load-balancing terms, one per MoE module (see moe.ts). */
  readonly moeAux: Value[] = [];
  private readonly perExample: Set<string>;
  private readonly loraSet: Set<string>;
  private readonly moeSet: Set<string>;
  /** Set by the architecture once the inputs exist. */
  batchDim!: Value; // int64 [1] = [B]
  tokenMask!: Value; // float [B, T, 1]

  constructor(g: GraphBuilder, private readonly o: ContextOptions) {
    this.g = g;
    this.config = o.config;
    this.dtype = o.dtype ?? 'float32';
    this.lora = o.lora;
    this.moe = o.moe;
    this.perExample = new Set(o.perExample ?? []);
    this.loraSet = new Set(o.lora ? loraModules(o.config, o.lora).map((m) => m.name) : []);
    this.moeSet = new Set(o.moe ? moeModules(o.config, o.moe).map((m) => m.name) : []);
  }

  /** The parameter `name` of `shape` (created on first use), or its batch-expanded copy when per-example. */
  param(name: string, shape: number[]): Value {
    let v = this.params.get(name);
    if (!v) {
      const init = this.o.initializers?.get(name);
      if (init) {
        if (init.dims.join() !== shape.join()) throw new DataError(`weight ${name}: shape [${init.dims}], expected [${shape}]`);
        const data = this.dtype === 'float64' ? Float64Array.from(init.data) : Float32Array.from(init.data);
        v = this.g.initializer(name, data, shape);
      } else {
        v = this.g.input(name, this.dtype, shape);
      }
      this.params.set(name, v);
    } else if (v.shape.join() !== shape.join()) {
      throw new ConfigError(`parameter ${name} used with shapes [${v.shape}] and [${shape}]`);
    }
    if (!this.perExample.has(name)) return v;
    let e = this.expanded.get(name);
    if (!e) {
      e = O.expand(v, O.concat([this.batchDim, this.g.ints(shape)], 0));
      this.expanded.set(name, e);
    }
    return e;
  }
  isPerExample(name: string): boolean { return this.perExample.has(name); }

  /** y = x Wᵀ (+ b) (+ LoRA / LoRA-MoE delta) for x [B, T, in] → [B, T, out]. */
  linear(x: Value, m: LinearModule): Value {
    if (this.o.activationNorms) {
      this.actSumSq.set(m.name, O.reduceSum(O.mul(O.mul(x, x), this.tokenMask), [0, 1], false));
    }
    const wName = `${m.name}.weight`;
    const W = this.param(wName, m.layout === 'linear' ? [m.outF, m.inF] : [m.inF, m.outF]);
    let y = O.matMul(x, m.layout === 'linear' ? O.transposeLast2(W) : W);
    if (m.bias) y = O.add(y, this.param(`${m.name}.bias`, [m.outF]));
    if (this.lora && this.loraSet.has(m.name)) {
      const r = this.lora.r;
      const A = this.param(peftKey(m.name, 'A'), [r, m.inF]), B = this.param(peftKey(m.name, 'B'), [m.outF, r]);
      const d = O.matMul(O.matMul(x, O.transposeLast2(A)), O.transposeLast2(B));
      y = O.add(y, O.mul(d, loraScaling(this.lora)));
    }
    if (this.moe && this.moeSet.has(m.name)) y = O.add(y, moeDelta(this, x, m));
    return y;
  }

  /** A constant scalar of the model dtype. */
  scalar(v: number): Value { return this.g.constant(v, this.dtype); }
}
