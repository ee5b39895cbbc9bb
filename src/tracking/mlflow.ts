/**
 * A small typed client for MLflow's REST API (tracking + the artifact proxy of
 * `mlflow server --serve-artifacts`). Written here because no maintained JS client exists
 * (the npm `mlflow` package is broken; "mlflow-js-client" does not exist).
 */

export interface MlflowRunInfo {
  run_id: string;
  experiment_id: string;
  run_name?: string;
  status: 'RUNNING' | 'SCHEDULED' | 'FINISHED' | 'FAILED' | 'KILLED';
  start_time?: number;
  end_time?: number;
  artifact_uri: string;
  lifecycle_stage: string;
}

export interface MlflowRun {
  info: MlflowRunInfo;
  data: {
    metrics?: Array<{ key: string; value: number; timestamp: number; step: number }>;
    params?: Array<{ key: string; value: string }>;
    tags?: Array<{ key: string; value: string }>;
  };
}

export interface MlflowExperiment {
  experiment_id: string;
  name: string;
  lifecycle_stage: string;
  artifact_location?: string;
  tags?: KeyValue[];
}

export interface Metric { key: string; value: number; timestamp: number; step?: number }
export interface KeyValue { key: string; value: string }

/** MLflow answered with an error (4xx/5xx). `errorCode` is MLflow's, e.g. RESOURCE_DOES_NOT_EXIST. */
export class MlflowApiError extends Error {
  constructor(readonly status: number, readonly errorCode: string, message: string) {
    super(`MLflow ${status} ${errorCode}: ${message}`);
    this.name = 'MlflowApiError';
  }
}

/** MLflow could not be reached at all (down, refused, timed out). */
export class MlflowUnavailableError extends Error {
  constructor(readonly uri: string, cause: unknown) {
    super(`MLflow at ${uri} is unavailable: ${(cause as Error)?.message ?? cause}`, { cause });
    this.name = 'MlflowUnavailableError';
  }
}

export class MlflowClient {
  constructor(readonly baseUrl: string, readonly timeoutMs = 10_000) {}

  private async request<T>(method: 'GET' | 'POST', path: string, body?: unknown, query?: Record<string, string>): Promise<T> {
    const url = new URL(`${this.baseUrl.replace(/\/$/, '')}/api/2.0/mlflow/${path}`);
    for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: body === undefined ? undefined : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new MlflowUnavailableError(this.baseUrl, err);
    }
    const text = await res.text();
    if (!res.ok) {
      let code = 'HTTP_ERROR';
      let message = text.slice(0, 300);
      try {
        const j = JSON.parse(text) as { error_code?: string; message?: string };
        code = j.error_code ?? code;
        message = j.message ?? message;
      } catch { /* not JSON */ }
      if (res.status >= 500 && res.status !== 500) throw new MlflowUnavailableError(this.baseUrl, new Error(`${res.status} ${message}`));
      throw new MlflowApiError(res.status, code, message);
    }
    return (text ? JSON.parse(text) : {}) as T;
  }

  async health(): Promise<boolean> {
    try {
      const res = await fetch(`${this.baseUrl.replace(/\/$/, '')}/health`, { signal: AbortSignal.timeout(2000) });
      return res.ok;
    } catch {
      return false;
    }
  }

  /** The experiment with this name, or undefined. */
  async getExperimentByName(name: string): Promise<MlflowExperiment | undefined> {
    try {
      const r = await this.request<{ experiment: MlflowExperiment }>('GET', 'experiments/get-by-name', undefined, { experiment_name: name });
      return r.experiment;
    } catch (err) {
      if (err instanceof MlflowApiError && err.errorCode === 'RESOURCE_DOES_NOT_EXIST') return undefined;
      throw err;
    }
  }

  async createExperiment(name: string, tags: KeyValue[] = []): Promise<string> {
    const r = await this.request<{ experiment_id: string }>('POST', 'experiments/create', { name, tags });
    return r.experiment_id;
  }

  /** Get-or-create by name (tolerates a concurrent create); `tags` are set on a found experiment too. */
  async ensureExperiment(name: string, tags: KeyValue[] = []): Promise<string> {
    const found = await this.getExperimentByName(name);
    if (found) {
      const have = new Map((found.tags ?? []).map((t) => [t.key, t.value]));
      for (const t of tags) if (have.get(t.key) !== t.value) await this.setExperimentTag(found.experiment_id, t.key, t.value);
      return found.experiment_id;
    }
    try {
      return await this.createExperiment(name, tags);
    } catch (err) {
      if (err instanceof MlflowApiError && err.errorCode === 'RESOURCE_ALREADY_EXISTS') return this.ensureExperiment(name, tags);
      throw err;
    }
  }

  async setExperimentTag(experimentId: string, key: string, value: string): Promise<void> {
    await this.request('POST', 'experiments/set-experiment-tag', { experiment_id: experimentId, key, value });
  }

  async createRun(args: { experimentId: string; runName?: string; startTime?: number; tags?: KeyValue[] }): Promise<MlflowRunInfo> {
    const r = await this.request<{ run: MlflowRun }>('POST', 'runs/create', {
      experiment_id: args.experimentId,
      run_name: args.runName,
      start_time: args.startTime ?? Date.now(),
      tags: args.tags ?? [],
    });
    return r.run.info;
  }

  async updateRun(args: { runId: string; status: MlflowRunInfo['status']; endTime?: number }): Promise<void> {
    await this.request('POST', 'runs/update', { run_id: args.runId, status: args.status, end_time: args.endTime });
  }

  async getRun(runId: string): Promise<MlflowRun> {
    return (await this.request<{ run: MlflowRun }>('GET', 'runs/get', undefined, { run_id: runId })).run;
  }

  async setTag(runId: string, key: string, value: string): Promise<void> {
    await this.request('POST', 'runs/set-tag', { run_id: runId, key, value });
  }

  /** log-batch, split to respect MLflow's per-request limits (1000 metrics, 100 params, 100 tags). */
  /** Every logged value of one metric of a run, by step (metric series). */
  async getMetricHistory(runId: string, key: string): Promise<Metric[]> {
    const out: Metric[] = [];
    let token: string | undefined;
    do {
      const r = await this.request<{ metrics?: Metric[]; next_page_token?: string }>('GET', 'metrics/get-history', undefined, { run_id: runId, metric_key: key, max_results: '25000', ...(token ? { page_token: token } : {}) });
      out.push(...(r.metrics ?? []));
      token = r.next_page_token;
    } while (token);
    return out.map((m) => ({ ...m, step: Number(m.step ?? 0) })).sort((a, b) => (a.step ?? 0) - (b.step ?? 0));
  }

  async logBatch(runId: string, batch: { metrics?: Metric[]; params?: KeyValue[]; tags?: KeyValue[] }): Promise<void> {
    const metrics = batch.metrics ?? [];
    const params = batch.params ?? [];
    const tags = batch.tags ?? [];
    for (let i = 0; i === 0 || i * 1000 < metrics.length || i * 100 < params.length || i * 100 < tags.length; i++) {
      await this.request('POST', 'runs/log-batch', {
        run_id: runId,
        metrics: metrics.slice(i * 1000, (i + 1) * 1000).map((m) => ({ step: 0, ...m })),
        params: params.slice(i * 100, (i + 1) * 100),
        tags: tags.slice(i * 100, (i + 1) * 100),
      });
    }
  }

  async searchRuns(args: { experimentIds: string[]; filter?: string; maxResults?: number }): Promise<MlflowRun[]> {
    const out: MlflowRun[] = [];
    let pageToken: string | undefined;
    do {
      const r = await this.request<{ runs?: MlflowRun[]; next_page_token?: string }>('POST', 'runs/search', {
        experiment_ids: args.experimentIds,
        filter: args.filter ?? '',
        max_results: Math.min(args.maxResults ?? 1000, 1000),
        page_token: pageToken,
      });
      out.push(...(r.runs ?? []));
      pageToken = r.next_page_token;
    } while (pageToken && out.length < (args.maxResults ?? Infinity));
    return out;
  }

  /** Upload bytes as a run artifact through the server's artifact proxy (--serve-artifacts). */
  async uploadArtifact(run: MlflowRunInfo, path: string, data: Uint8Array | string, contentType = 'application/octet-stream'): Promise<void> {
    const m = /^mlflow-artifacts:\/(.*)$/.exec(run.artifact_uri);
    if (!m) throw new MlflowApiError(0, 'UNSUPPORTED_ARTIFACT_URI', `run ${run.run_id} has artifact_uri ${run.artifact_uri}; expected mlflow-artifacts:/ (start the server with --serve-artifacts)`);
    const rel = `${m[1].replace(/^\/+/, '')}/${path}`.split('/').map(encodeURIComponent).join('/');
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl.replace(/\/$/, '')}/api/2.0/mlflow-artifacts/artifacts/${rel}`, {
        method: 'PUT',
        headers: { 'content-type': contentType },
        body: data,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new MlflowUnavailableError(this.baseUrl, err);
    }
    if (!res.ok) throw new MlflowApiError(res.status, 'ARTIFACT_UPLOAD_FAILED', (await res.text()).slice(0, 300));
  }

  /** Download a run artifact through the server's artifact proxy. */
  async downloadArtifact(run: MlflowRunInfo, path: string): Promise<Uint8Array> {
    const m = /^mlflow-artifacts:\/(.*)$/.exec(run.artifact_uri);
    if (!m) throw new MlflowApiError(0, 'UNSUPPORTED_ARTIFACT_URI', `run ${run.run_id} has artifact_uri ${run.artifact_uri}; expected mlflow-artifacts:/`);
    const rel = `${m[1].replace(/^\/+/, '')}/${path}`.split('/').map(encodeURIComponent).join('/');
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl.replace(/\/$/, '')}/api/2.0/mlflow-artifacts/artifacts/${rel}`, { signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new MlflowUnavailableError(this.baseUrl, err);
    }
    if (!res.ok) throw new MlflowApiError(res.status, 'ARTIFACT_DOWNLOAD_FAILED', (await res.text()).slice(0, 300));
    return new Uint8Array(await res.arrayBuffer());
  }

  async listArtifacts(runId: string, path = ''): Promise<Array<{ path: string; is_dir: boolean; file_size?: number }>> {
    const r = await this.request<{ files?: Array<{ path: string; is_dir: boolean; file_size?: number }> }>('GET', 'artifacts/list', undefined, { run_id: runId, path });
    return r.files ?? [];
  }
}

/** The experiment's runs table in MLflow 3's model-training view (its UI picks the view from `workflowType`). */
export function experimentRunsUrl(mlflowUri: string, experimentId: string): string {
  return `${mlflowUri.replace(/\/$/, '')}/#/experiments/${experimentId}/runs?workflowType=machine_learning`;
}
