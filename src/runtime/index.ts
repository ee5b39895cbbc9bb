export { parseDevice, formatDevice, type Device } from './device.ts';
export { createSession, cudaProviderPath, f32, f64, i64, type CreateSessionOptions, type HostArray, type HostTensor, type Session } from './session.ts';
export { cpuCaches, lastLevelCacheBytes, parseCacheSize, type CacheLevel } from './cache.ts';
