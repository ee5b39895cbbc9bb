import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../store/atomic.ts';
import type { TrackingEvent } from './events.ts';
import { MlflowApiError, type MlflowClient } from './mlflow.ts';
import { publishEvent, type PublishCache } from './publish.ts';
import type { ArtifactStore } from '../store/artifacts.ts';

let counter = 0;
/** Pending file names sort in enqueue order (time, then this process's counter). */
const nextName = () => `${String(Date.now()).padStart(15, '0')}-${process.pid}-${String(counter++).padStart(8, '0')}.json`;

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
    await writeFileAtomic(join(this.pendingDir, nextName()), JSON.stringify(event));
  }

  /**
   * Several events in one file (one atomic write), delivered in their order: what a cell resolved
   * from the cache at once sends (its parent run and every stage's nested run).
   */
  async enqueueMany(events: TrackingEvent[]): Promise<void> {
    if (events.length) await writeFileAtomic(join(this.pendingDir, nextName()), JSON.stringify(events));
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
      const parsed = JSON.parse(text) as TrackingEvent | TrackingEvent[];
      const events = Array.isArray(parsed) ? parsed : [parsed];
      for (const [j, event] of events.entries()) {
        try {
          await publishEvent(client, event, cache, this.store);
          delivered++;
        } catch (err) {
          if (err instanceof MlflowApiError && err.status >= 400 && err.status < 500) {
            const deadName = events.length > 1 ? name.replace(/\.json$/, `-${j}.json`) : name;
            await writeFileAtomic(join(this.deadDir, deadName), JSON.stringify(event));
            await writeFileAtomic(join(this.deadDir, `${deadName}.error.txt`), String(err.message));
            dead++;
            continue;
          }
          // MLflow is away: keep what is left of this file (what was delivered is not sent twice).
          if (j > 0) await writeFileAtomic(path, JSON.stringify(events.slice(j)));
          return { delivered, remaining: names.length - i, dead, error: (err as Error).message };
        }
      }
      await rm(path, { force: true });
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
