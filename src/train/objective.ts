/**
 * TrainObjective over an ONNX session: a graph whose inputs are the trainable tensors (by name)
 * plus data inputs, with a scalar mean-loss output and one gradient output per trainable tensor
 * (default `grad.<name>`, as src/models buildTrainGraph writes them).
 */
import { DataError } from '../errors.ts';
import { createSession, type HostTensor, type Session } from '../runtime/index.ts';
import type { ParamMap } from './checkpoint.ts';
import type { LossAndGrads, TrainObjective } from './trainer.ts';

export interface OnnxObjectiveOptions<E> {
  session: Session;
  /** Trainable tensors: name → shape (the graph inputs they are fed to). */
  trainable: Map<string, number[]>;
  /** Data feeds (and any frozen weights) for a list of examples. */
  feeds(examples: E[]): Record<string, HostTensor>;
  /** Weight of a micro-batch's mean (default: examples.length). */
  weight?(examples: E[]): number;
  lossOutput?: string;
  gradOutput?(name: string): string;
  /** Feed the trainable tensors as float64 (for a float64 graph). */
  float64?: boolean;
}

export class OnnxObjective<E> implements TrainObjective<E> {
  constructor(private readonly o: OnnxObjectiveOptions<E>) {}

  static async create<E>(args: Omit<OnnxObjectiveOptions<E>, 'session'> & { model: Uint8Array; device?: string; threads?: number }): Promise<OnnxObjective<E>> {
    const session = await createSession({ model: args.model, device: args.device ?? 'cpu:0', threads: args.threads });
    return new OnnxObjective({ ...args, session });
  }

  private allFeeds(params: ParamMap, examples: E[]): Record<string, HostTensor> {
    const f = this.o.feeds(examples);
    for (const [name, shape] of this.o.trainable) {
      const p = params.get(name);
      if (!p) throw new DataError(`objective: trainable tensor "${name}" is missing from params`);
      f[name] = { data: this.o.float64 ? Float64Array.from(p) : p, dims: shape };
    }
    return f;
  }

  async lossAndGrads({ params, examples }: { params: ParamMap; examples: E[] }): Promise<LossAndGrads> {
    const lossName = this.o.lossOutput ?? 'loss';
    const gradName = this.o.gradOutput ?? ((n: string) => `grad.${n}`);
    const names = [...this.o.trainable.keys()];
    const out = await this.o.session.run(this.allFeeds(params, examples), [lossName, ...names.map(gradName)]);
    const grads = new Map<string, ArrayLike<number>>();
    for (const n of names) grads.set(n, out[gradName(n)].data as Float32Array | Float64Array);
    return { loss: Number(out[lossName].data[0]), grads, weight: this.o.weight?.(examples) ?? examples.length };
  }

  async loss({ params, examples }: { params: ParamMap; examples: E[] }): Promise<{ loss: number; weight: number }> {
    const lossName = this.o.lossOutput ?? 'loss';
    const out = await this.o.session.run(this.allFeeds(params, examples), [lossName]);
    return { loss: Number(out[lossName].data[0]), weight: this.o.weight?.(examples) ?? examples.length };
  }

  release(): Promise<void> { return this.o.session.release(); }
}
