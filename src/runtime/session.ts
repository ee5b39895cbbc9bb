/**
 * ONNX Runtime sessions pinned to one LayerFlow device.
 *
 * cpu:N  -> CPU execution provider; N names the worker slot, `threads` sets intraOpNumThreads
 *           (default: the device's thread budget set by its worker — cores / devices on the host, or
 *           LAYERFLOW_THREADS_PER_DEVICE — else all cores).
 * cuda:N -> CUDA execution provider on GPU N. There is no silent CPU fallback: if the CUDA EP is
 *           not installed or fails to initialise, createSession throws. (Nodes the CUDA EP has no
 *           kernel for still run on CPU inside the session, as in every ORT build; pass
 *           `strictDevice: true` to make ORT refuse that too.)
 *
 * Installing the GPU build (Linux x64, CUDA 12 + cuDNN 9 on the host): onnxruntime-node ships the CPU
 * binaries in the npm package and downloads the CUDA EP libraries from NuGet in its postinstall
 * step (on linux/x64 by default). This repo's .npmrc sets `onnxruntime-node-install=skip` to keep
 * CPU-only installs fast, so on a GPU host either drop that line and `npm install`, or run
 *   ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node
 * (the environment variable wins over .npmrc; the older ONNXRUNTIME_NODE_INSTALL_CUDA=v12 also
 * works), which places
 * libonnxruntime_providers_{cuda,shared}.so next to onnxruntime_binding.node.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ConfigError, DataError } from '../errors.ts';
import { parseDevice, type Device } from './device.ts';
import { deviceThreads } from './devices.ts';
import { asOutOfMemory, checkMemoryBudget, isOutOfMemory } from './oom.ts';
import { createCachedCpuSession } from './session-cache.ts';

export type HostArray = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
export interface HostTensor { data: HostArray; dims: readonly number[]; /** needed only for 'bool' (Uint8Array) */ dtype?: 'bool' }

export interface CreateSessionOptions {
  model: Uint8Array;
  device: string;
  /** CPU intra-op threads; defaults to the device's thread budget (src/runtime/devices.ts), else all cores. */
  threads?: number;
  /** CUDA only: fail instead of placing unsupported nodes on the CPU. */
  strictDevice?: boolean;
}

export interface Session {
  readonly device: Device;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /** Run with host arrays in, host arrays out. `fetches` defaults to all outputs. */
  run(feeds: Record<string, HostTensor>, fetches?: string[]): Promise<Record<string, HostTensor>>;
  release(): Promise<void>;
}

/** Where the CUDA EP library must be for onnxruntime-node to load it. */
export function cudaProviderPath(): string {
  const req = createRequire(import.meta.url);
  const root = dirname(req.resolve('onnxruntime-node/package.json'));
  return join(root, 'bin', 'napi-v6', `${process.platform}`, `${process.arch}`, 'libonnxruntime_providers_cuda.so');
}

const INSTALL_HINT = 'install the CUDA build on this host: ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node (needs CUDA 12 + cuDNN 9)';

export async function createSession(opts: CreateSessionOptions): Promise<Session> {
  const device = parseDevice(opts.device);
  if (!(opts.model instanceof Uint8Array) || opts.model.length === 0) throw new DataError('createSession: model must be non-empty ONNX bytes');
  if (opts.threads !== undefined && !(Number.isInteger(opts.threads) && opts.threads > 0)) {
    throw new ConfigError(`createSession: threads must be a positive integer, got ${opts.threads}`);
  }
  const so: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', interOpNumThreads: 1 };
  if (device.kind === 'cpu') {
    so.executionProviders = ['cpu'];
    // No memory pattern: ORT would pre-plan one block per input shape for all intermediates — on the
    // 135M per-example gradient graph peak RSS 5.37 → 3.84 GB without it, batch time within 2 %.
    so.enableMemPattern = false;
    so.intraOpNumThreads = opts.threads ?? deviceThreads(opts.device.trim()) ?? availableParallelism();
  } else {
    const cuda = ort.listSupportedBackends().find((b) => b.name === 'cuda');
    if (!cuda) throw new ConfigError(`device ${opts.device}: this onnxruntime-node build has no CUDA execution provider; ${INSTALL_HINT}`);
    if (!cuda.bundled && !existsSync(cudaProviderPath())) {
      throw new ConfigError(`device ${opts.device}: CUDA execution provider library not found at ${cudaProviderPath()}; ${INSTALL_HINT}`);
    }
    so.executionProviders = [{ name: 'cuda', deviceId: device.index }];
    if (opts.strictDevice) so.extra = { session: { disable_cpu_ep_fallback: '1' } };
  }
  let s: ort.InferenceSession;
  try {
    s = (device.kind === 'cpu' ? await createCachedCpuSession(opts.model, so) : null) ?? await ort.InferenceSession.create(opts.model, so);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (isOutOfMemory(e)) throw asOutOfMemory(e, `device ${opts.device}: creating a session`);
    if (device.kind === 'cuda') throw new ConfigError(`device ${opts.device}: CUDA execution provider failed to initialise: ${msg}`, { cause: e });
    throw new DataError(`createSession: onnxruntime rejected the model: ${msg}`, { cause: e });
  }
  return wrap(s, device);
}

function toOrt(name: string, t: HostTensor): ort.Tensor {
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) throw new DataError(`feed ${name}: ${t.data.length} elements for dims [${t.dims}] (expected ${n})`);
  if (t.dtype === 'bool') return new ort.Tensor('bool', t.data as Uint8Array, t.dims);
  return new ort.Tensor(t.data as Float32Array, t.dims);
}

function wrap(s: ort.InferenceSession, device: Device): Session {
  return {
    device,
    inputNames: s.inputNames,
    outputNames: s.outputNames,
    async run(feeds, fetches) {
      const f: Record<string, ort.Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) f[k] = toOrt(k, v);
      const missing = s.inputNames.filter((n) => !(n in f));
      if (missing.length) throw new DataError(`run: missing feeds ${missing.join(', ')}`);
      let out: ort.InferenceSession.ReturnType;
      try {
        out = fetches ? await s.run(f, fetches) : await s.run(f);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (isOutOfMemory(e)) throw asOutOfMemory(e, `run on ${device.kind}:${device.index}`);
        throw new DataError(`run on ${device.kind}:${device.index}: ${msg}`, { cause: e });
      }
      // A device with a memory budget (LAYERFLOW_DEVICE_MEMORY_MB) fails the run that went over it.
      checkMemoryBudget(`${device.kind}:${device.index}`);
      const res: Record<string, HostTensor> = {};
      for (const [k, v] of Object.entries(out)) {
        res[k] = { data: v.data as HostArray, dims: [...v.dims], ...(v.type === 'bool' ? { dtype: 'bool' as const } : {}) };
      }
      return res;
    },
    release: () => s.release(),
  };
}

/** Convenience: a float tensor from numbers. */
export const f64 = (values: ArrayLike<number>, dims: number[]): HostTensor => ({ data: Float64Array.from(values), dims });
export const f32 = (values: ArrayLike<number>, dims: number[]): HostTensor => ({ data: Float32Array.from(values), dims });
export const i64 = (values: ArrayLike<number>, dims: number[]): HostTensor => ({ data: BigInt64Array.from(Array.from(values), (x) => BigInt(x)), dims });
