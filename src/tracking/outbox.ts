import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../store/atomic.ts';
import type { TrackingEvent } from './events.ts';
import { MlflowApiError, type MlflowClient } from './mlflow.ts';
import { publishEvent, type PublishCache } from './publish.ts';
import type { ArtifactStore } from '../store/artifacts.ts';

let counter = 0;

/**
 * Durable queue of tracking events (DESIGN.md contract 7: tracking never blocks science).
 * Stages enqueue (an atomic file write, no network); a deliverer sends them in order and
 * removes each once MLflow has taken it. If MLflow is down, events wait on disk; an event
 * MLflow rejects as malformed (4xx) goes to `dead/` with the reason, so one bad event cannot
 * hold back the rest.
 */
export class TrackingOutbox {
  readonly pendingDir: string;
  readonly deadDir: string;

  /** `store`: where stage events' `storeFiles` are read from at delivery time. */
  constructor(readonly dir: string, readonly store?: ArtifactStore) {
    this.pendingDir = join(dir, 'pending');
    this.deadDir = join(dir, 'dead');
  }

  async enqueue(event: TrackingEvent): Promise<void> {
    const name = `${String(Date.now()).padStart(15, '0')}-${process.pid}-${String(counter++).padStart(8, '0')}.json`;
    await writeFileAtomic(join(this.pendingDir, name), JSON.stringify(event));
  }

  async pending(): Promise<string[]> {
    const names = await readdir(this.pendingDir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
  }

  /** Deliver what is pending, in order. Stops at the first event MLflow cannot take now. */
  async deliver(client: MlflowClient, cache: PublishCache = new Map()): Promise<{ delivered: number; remaining: number; dead: number; error?: string }> {
    const names = await this.pending();
    let delivered = 0;
    let dead = 0;
    for (const [i, name] of names.entries()) {
      const path = join(this.pendingDir, name);
      const text = await readFile(path, 'utf8').catch(() => undefined);
      if (text === undefined) continue; // delivered by a concurrent deliverer
      try {
        await publishEvent(client, JSON.parse(text) as TrackingEvent, cache, this.store);
        await rm(path, { force: true });
        delivered++;
      } catch (err) {
        if (err instanceof MlflowApiError && err.status >= 400 && err.status < 500) {
          await mkdir(this.deadDir, { recursive: true });
          await rename(path, join(this.deadDir, name)).catch(() => undefined);
          await writeFileAtomic(join(this.deadDir, `${name}.error.txt`), String(err.message));
          dead++;
          continue;
        }
        return { delivered, remaining: names.length - i, dead, error: (err as Error).message };
      }
    }
    return { delivered, remaining: 0, dead };
  }
}

/**
 * Deliver in the background every `intervalMs` until stopped. One delivery at a time: two
 * concurrent deliverers could both create the same run before either has tagged it.
 */
export function startDeliveryLoop(
  outbox: TrackingOutbox,
  client: MlflowClient,
  intervalMs = 1000,
  onError: (message: string) => void = () => {},
): { stop(): Promise<void>; flush(): Promise<void> } {
  const cache: PublishCache = new Map();
  let current: Promise<void> | undefined;
  let stopped = false;
  let lastError: string | undefined;
  const tick = (): Promise<void> => {
    current ??= outbox
      .deliver(client, cache)
      .then((r) => {
        if (r.error && r.error !== lastError) onError(`tracking: ${r.remaining} event(s) waiting: ${r.error}`);
        lastError = r.error;
      })
      .catch((err) => onError(`tracking: ${(err as Error).message}`))
      .finally(() => (current = undefined));
    return current;
  };
  const timer = setInterval(() => {
    if (!stopped && !current) void tick();
  }, intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await current;
    },
    async flush() {
      await current;
      await tick();
    },
  };
}
