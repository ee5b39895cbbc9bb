import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { YamlSource, type FieldPath, type Position } from './yaml-source.ts';
import { SweepConfigError, issueAt, type SweepIssue } from './errors.ts';
import { findSecret, findSecretShapes, findSecretsInText, scrubSecrets, secretMessage, type SecretFinding } from './secrets.ts';
import type { PipelineDef } from './pipeline.ts';
import { sha256Path } from '../store/hash.ts';

export type AxisValue = string | number | boolean;

/** The fully resolved configuration of one cell: what its stages' config slices are cut from. */
export interface CellConfig {
  model: Record<string, unknown> & { id: string };
  task: Record<string, unknown> & { id: string };
  method?: Record<string, unknown> & { id: string };
  seed: number;
  stages: Record<string, Record<string, unknown>>;
}

export interface Cell {
  /** Deterministic from the YAML: `model=a,task=b,seed=1` over the sweep's axes in order. */
  id: string;
  axes: Record<string, AxisValue>;
  config: CellConfig;
}

export interface Sweep {
  name: string;
  pipeline: string;
  file: string;
  description?: string;
  concurrency: number;
  heartbeatSeconds?: number;
  /** Stages the sweep is for: only these and what they need run (default: the whole DAG). */
  targets?: string[];
  /** Device lease: a device stage not started (or its worker silent) this long moves to another device. */
  leaseSeconds?: number;
  cells: Cell[];
}

const ID = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'expected an id of letters, digits, ".", "_" or "-"');
const AXIS_VALUE = z.union([z.string(), z.number(), z.boolean()]);
const REF_AXES = ['model', 'task', 'method'] as const;

function sweepSchema(p: PipelineDef) {
  const entry = (shape: z.ZodObject) => z.strictObject({ id: ID, ...shape.shape });
  const stageSettings = Object.fromEntries(p.stages.map((s) => [s.name, z.record(z.string(), z.unknown()).optional()]));
  return z.strictObject({
    sweep: ID,
    pipeline: z.string(),
    description: z.string().optional(),
    concurrency: z.number().int().min(1).max(1024).default(4),
    /** Heartbeat timeout of every stage: a worker silent this long is presumed lost and its stage retried (default: per stage). */
    heartbeatSeconds: z.number().int().min(1).optional(),
    /** Run only these stages and what they need (e.g. one branch of a DAG). */
    /** Device lease in seconds (default LAYERFLOW_LEASE_SECONDS, else 300): see infra/CLUSTER.md. */
    leaseSeconds: z.number().int().min(1).optional(),
    targets: z.array(z.enum(p.stages.map((s) => s.name) as [string, ...string[]])).min(1, 'expected at least one stage name').optional(),
    models: z.array(entry(p.model)).min(1),
    tasks: z.array(entry(p.task)).min(1),
    methods: p.method ? z.array(entry(p.method)).min(1) : z.array(z.never()).max(0).optional(),
    stages: z.strictObject(stageSettings).default({}),
    axes: z.record(z.string(), z.array(AXIS_VALUE).min(1, 'expected a non-empty list of values')).default({}),
    zip: z.array(z.array(z.string()).min(2, 'expected at least two axis names to zip')).default([]),
    exclude: z.array(z.record(z.string(), AXIS_VALUE)).default([]),
  });
}

/** Load, validate and expand a sweep file. Throws SweepConfigError listing every problem found. */
export async function loadSweep(file: string, pipelines: Record<string, PipelineDef>): Promise<Sweep> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new SweepConfigError([{ file, line: 0, col: 0, field: '(file)', message: `cannot read sweep file: ${err.code ?? err.message}` }]);
  });
  return parseSweep(file, text, pipelines);
}

export async function parseSweep(file: string, text: string, pipelines: Record<string, PipelineDef>): Promise<Sweep> {
  const src = new YamlSource(file, text);
  const issues: SweepIssue[] = [];
  const secrets: SecretFinding[] = [];
  const at = (path: FieldPath, message: string, keyOf = false) => issues.push(issueAt(file, src.locate(path, keyOf), path, message));
  const fail = () => {
    issues.sort((a, b) => a.line - b.line || a.col - b.col);
    // No message or field echoes a secret (`"<token>" is not a model id`, a token as a key): only its redacted form.
    const scrub = (i: SweepIssue) => ({ ...i, field: scrubSecrets(i.field, secrets), message: scrubSecrets(i.message, secrets) });
    return new SweepConfigError(secrets.length ? issues.map(scrub) : issues);
  };

  const syntax = src.syntaxErrors();
  if (syntax.length) {
    for (const e of syntax) issues.push({ file, ...e.pos, field: '(yaml)', message: e.message });
    // yaml's messages quote the source: scrub secrets from them, and report the secrets too.
    for (const f of findSecretsInText(text)) {
      secrets.push(f);
      issues.push({ file, ...src.pos(f.index), field: '(text)', message: secretMessage(f) });
    }
    throw fail();
  }
  findSecrets(src, (pos, path, f) => {
    secrets.push(f);
    issues.push(issueAt(file, pos, path, secretMessage(f)));
  });
  const js = src.toJS();
  if (!js.ok) {
    issues.push({ file, ...js.pos, field: '(yaml)', message: js.message });
    throw fail();
  }
  const raw = js.value;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    at([], 'expected a mapping with keys sweep, pipeline, models, tasks, axes, ...');
    throw fail();
  }
  const pipelineName = Object.hasOwn(raw, 'pipeline') ? (raw as Record<string, unknown>).pipeline : undefined;
  const pipeline = typeof pipelineName === 'string' && Object.hasOwn(pipelines, pipelineName) ? pipelines[pipelineName] : undefined;
  if (!pipeline) {
    const got = pipelineName === undefined ? 'no pipeline key' : pipelineName !== null && typeof pipelineName === 'object' ? (Array.isArray(pipelineName) ? 'a list' : 'a mapping') : JSON.stringify(pipelineName);
    at(['pipeline'], `expected one of the known pipelines: ${Object.keys(pipelines).join(', ')}; got ${got}`);
    throw fail();
  }

  const schema = sweepSchema(pipeline);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    for (const i of parsed.error.issues) {
      const path = i.path as FieldPath;
      if (i.code === 'unrecognized_keys') {
        const known = knownKeys(schema, path);
        for (const k of i.keys) at([...path, k], `unknown key ${JSON.stringify(k)}${known ? `; expected one of: ${known.join(', ')}` : ''}`, true);
      } else if (i.code === 'invalid_union') {
        at(path, 'expected a single string, number or boolean');
      } else {
        at(path, i.message.replace(/^Invalid input: /, ''));
      }
    }
    throw fail();
  }
  const cfg = parsed.data;

  // Stage settings: each stage's own schema (strict, with defaults).
  const baseSettings: Record<string, Record<string, unknown>> = {};
  for (const s of pipeline.stages) {
    const r = s.settings.safeParse(cfg.stages[s.name] ?? {});
    if (!r.success) reportNested(r.error, ['stages', s.name], s.settings);
    else baseSettings[s.name] = r.data;
  }
  function reportNested(err: z.ZodError, prefix: FieldPath, sch: z.ZodType) {
    for (const i of err.issues) {
      const path = [...prefix, ...(i.path as FieldPath)];
      if (i.code === 'unrecognized_keys') {
        const known = knownKeys(sch, i.path as FieldPath);
        for (const k of i.keys) at([...path, k], `unknown setting ${JSON.stringify(k)}${known ? `; expected one of: ${known.join(', ')}` : ''}`, true);
      } else at(path, i.message.replace(/^Invalid input: /, ''));
    }
  }

  // Unique ids per entry list.
  const lists = { model: cfg.models, task: cfg.tasks, method: cfg.methods ?? [] } as const;
  for (const [kind, entries] of Object.entries(lists)) {
    const seen = new Map<string, number>();
    entries.forEach((e: { id: string }, idx: number) => {
      const prev = seen.get(e.id);
      if (prev !== undefined) at([`${kind}s`, idx, 'id'], `duplicate ${kind} id "${e.id}" (first defined at ${kind}s[${prev}])`);
      else seen.set(e.id, idx);
    });
  }

  // Axes: model/task/method default to every defined entry, seed to [0].
  const axes = new Map<string, AxisValue[]>();
  for (const k of REF_AXES) {
    if (k === 'method' && !pipeline.method) continue;
    axes.set(k, cfg.axes[k] ?? lists[k].map((e: { id: string }) => e.id));
  }
  axes.set('seed', cfg.axes.seed ?? [0]);
  for (const [key, values] of Object.entries(cfg.axes)) {
    const path: FieldPath = ['axes', key];
    if ((REF_AXES as readonly string[]).includes(key)) {
      if (key === 'method' && !pipeline.method) {
        at(path, `pipeline ${pipeline.name} has no methods; expected one of: model, task, seed, stages.<stage>.<setting>`, true);
        continue;
      }
      const ids = lists[key as 'model'].map((e: { id: string }) => e.id);
      values.forEach((v, i) => {
        if (!ids.includes(String(v))) at([...path, i], `"${v}" is not a ${key} id; expected one of: ${ids.join(', ')}`);
      });
    } else if (key === 'seed') {
      values.forEach((v, i) => {
        if (typeof v !== 'number' || !Number.isInteger(v)) at([...path, i], `expected an integer seed, got ${JSON.stringify(v)}`);
      });
    } else {
      const m = /^stages\.([^.]+)\.([^.]+)$/.exec(key);
      const stage = m && pipeline.stages.find((s) => s.name === m[1]);
      const settingKeys = stage ? knownKeys(stage.settings, []) ?? [] : [];
      if (!m || !stage || !settingKeys.includes(m[2])) {
        at(path, `unknown axis "${key}"; expected model, task, ${pipeline.method ? 'method, ' : ''}seed or stages.<stage>.<setting> (stages: ${pipeline.stages.map((s) => s.name).join(', ')})`, true);
        continue;
      }
      values.forEach((v, i) => {
        const r = stage.settings.safeParse({ ...(cfg.stages[stage.name] ?? {}), [m[2]]: v });
        if (!r.success) at([...path, i], r.error.issues.map((x) => x.message.replace(/^Invalid input: /, '')).join('; '));
      });
      axes.set(key, values);
    }
    const dup = values.findIndex((v, i) => values.indexOf(v) !== i);
    if (dup >= 0) at([...path, dup], `duplicate value ${JSON.stringify(values[dup])} in axis "${key}"`);
  }

  // Zip groups: named axes, disjoint, equal lengths.
  const zipped = new Map<string, number>();
  cfg.zip.forEach((group, g) => {
    group.forEach((name, i) => {
      if (!axes.has(name)) at(['zip', g, i], `"${name}" is not an axis; expected one of: ${[...axes.keys()].join(', ')}`);
      else if (zipped.has(name)) at(['zip', g, i], `axis "${name}" is already zipped in zip[${zipped.get(name)}]`);
      else zipped.set(name, g);
    });
    const lengths = group.filter((n) => axes.has(n)).map((n) => axes.get(n)!.length);
    if (new Set(lengths).size > 1)
      at(['zip', g], `zipped axes must have equal lengths; got ${group.map((n) => `${n}: ${axes.get(n)?.length ?? '?'}`).join(', ')}`);
  });
  if (issues.length) throw fail();

  // Expand: grid product over units (a zip group or a single axis).
  const units: string[][] = [];
  for (const name of axes.keys()) {
    const g = zipped.get(name);
    if (g === undefined) units.push([name]);
    else if (!units.some((u) => u.includes(name))) units.push(cfg.zip[g]);
  }
  let combos: Array<Record<string, AxisValue>> = [{}];
  for (const unit of units) {
    const n = axes.get(unit[0])!.length;
    const next: Array<Record<string, AxisValue>> = [];
    for (const c of combos)
      for (let i = 0; i < n; i++) next.push({ ...c, ...Object.fromEntries(unit.map((a) => [a, axes.get(a)![i]])) });
    combos = next;
  }

  // Excludes: every key an axis, every value on that axis, every rule matching some cell.
  cfg.exclude.forEach((rule, r) => {
    for (const [k, v] of Object.entries(rule)) {
      if (!axes.has(k)) at(['exclude', r, k], `"${k}" is not an axis; expected one of: ${[...axes.keys()].join(', ')}`, true);
      else if (!axes.get(k)!.includes(v)) at(['exclude', r, k], `${JSON.stringify(v)} is not a value of axis "${k}"; expected one of: ${axes.get(k)!.join(', ')}`);
    }
  });
  if (issues.length) throw fail();
  const matches = (rule: Record<string, AxisValue>, c: Record<string, AxisValue>) => Object.entries(rule).every(([k, v]) => c[k] === v);
  cfg.exclude.forEach((rule, r) => {
    if (!combos.some((c) => matches(rule, c))) at(['exclude', r], 'this exclusion matches no cell of the sweep');
  });
  const kept = combos.filter((c) => !cfg.exclude.some((rule) => matches(rule, c)));
  if (kept.length === 0) at(['exclude'], 'every cell is excluded; expected at least one cell to run');
  if (issues.length) throw fail();

  // Input files are hashed into the config, so changed data changes cache keys.
  const baseDir = dirname(resolve(file));
  const fileHashes = new Map<string, { path: string; sha256: string }>();
  for (const spec of pipeline.inputFiles ?? []) {
    const [kind, field] = spec.split('.') as ['model' | 'task' | 'method', string];
    const entries = lists[kind] as Array<Record<string, unknown>>;
    for (let i = 0; i < entries.length; i++) {
      const rel = entries[i][field];
      if (typeof rel !== 'string') continue;
      const abs = resolve(baseDir, rel);
      const ok = await stat(abs).then((s) => s.isFile() || s.isDirectory(), () => false);
      if (!ok) at([`${kind}s`, i, field], `input file ${abs} does not exist; expected a path (file or folder) relative to the sweep file`);
      else {
        const sha = await sha256Path(abs).catch((err: NodeJS.ErrnoException) => {
          at([`${kind}s`, i, field], `cannot read input ${abs}: ${err.code ?? err.message}`);
          return undefined;
        });
        if (sha) fileHashes.set(`${kind}:${i}:${field}`, { path: abs, sha256: sha });
      }
    }
  }
  if (issues.length) throw fail();
  const resolveEntry = (kind: 'model' | 'task' | 'method', id: string) => {
    const entries = lists[kind] as Array<Record<string, unknown> & { id: string }>;
    const idx = entries.findIndex((e) => e.id === id);
    const out: Record<string, unknown> & { id: string } = { ...entries[idx] };
    for (const [k, v] of fileHashes) {
      const [kk, ii, field] = k.split(':');
      if (kk === kind && Number(ii) === idx) out[field] = v;
    }
    return out;
  };

  const seenIds = new Map<string, number>();
  const cells: Cell[] = kept.map((c, n) => {
    const id = [...axes.keys()].map((k) => `${k.replace(/^stages\./, '')}=${c[k]}`).join(',');
    if (seenIds.has(id)) at(['axes'], `two cells get the same id "${id}"`);
    seenIds.set(id, n);
    const stages: Record<string, Record<string, unknown>> = {};
    for (const s of pipeline.stages) {
      const overrides = Object.fromEntries(
        Object.entries(c).filter(([k]) => k.startsWith(`stages.${s.name}.`)).map(([k, v]) => [k.split('.')[2], v]),
      );
      stages[s.name] = Object.keys(overrides).length ? s.settings.parse({ ...(cfg.stages[s.name] ?? {}), ...overrides }) : baseSettings[s.name];
    }
    const config: CellConfig = {
      model: resolveEntry('model', String(c.model)),
      task: resolveEntry('task', String(c.task)),
      ...(pipeline.method ? { method: resolveEntry('method', String(c.method)) } : {}),
      seed: Number(c.seed),
      stages,
    };
    return { id, axes: Object.fromEntries([...axes.keys()].map((k) => [k, c[k]])), config };
  });
  if (issues.length) throw fail();
  return { name: cfg.sweep, pipeline: pipeline.name, file: resolve(file), description: cfg.description, concurrency: cfg.concurrency, heartbeatSeconds: cfg.heartbeatSeconds, targets: cfg.targets, leaseSeconds: cfg.leaseSeconds, cells };
}

/** The keys a strict object schema accepts at `path` (for "expected one of" messages). */
function knownKeys(schema: z.ZodType, path: FieldPath): string[] | undefined {
  let s: z.ZodType | undefined = schema;
  const unwrap = (x: z.ZodType): z.ZodType => {
    while (x instanceof z.ZodOptional || x instanceof z.ZodDefault || x instanceof z.ZodNullable) x = x.unwrap() as z.ZodType;
    return x;
  };
  for (const seg of path) {
    if (!s) return undefined;
    s = unwrap(s);
    if (s instanceof z.ZodObject && typeof seg === 'string') s = s.shape[seg] as z.ZodType | undefined;
    else if (s instanceof z.ZodArray && typeof seg === 'number') s = s.element as z.ZodType;
    else if (s instanceof z.ZodRecord) s = s.valueType as z.ZodType;
    else return undefined;
  }
  if (!s) return undefined;
  s = unwrap(s);
  return s instanceof z.ZodObject ? Object.keys(s.shape) : undefined;
}

/** Report every secret written in the sweep: in a scalar (by shape, or a literal under a secret key), or in a comment. */
function findSecrets(src: YamlSource, report: (pos: Position, path: FieldPath, f: SecretFinding) => void): void {
  const scalars = src.scalars();
  const flagged = new Set<number>();
  scalars.forEach((s, i) => {
    const f = findSecret(s.isKey ? undefined : s.key, s.value);
    if (!f) return;
    flagged.add(i);
    report(s.pos, s.path, f);
  });
  // Shapes in the text the scalars' values don't show: comments, or escapes / folding inside a scalar.
  for (const f of findSecretShapes(src.text)) {
    const i = scalars.findIndex((s) => f.index >= s.range[0] && f.index < s.range[1]);
    if (flagged.has(i)) continue;
    report(src.pos(f.index), i >= 0 ? scalars[i].path : ['(comment)'], f);
  }
}
