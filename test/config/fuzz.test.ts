/**
 * Fuzz of sweep parsing (seeded, so every run sees the same 200 files): valid sweeps for the real
 * pipelines (configs/*.yaml) mutated structurally (wrong types, unknown / missing keys, duplicate
 * ids, bad axes, zip and exclude, out-of-range numbers, wrong nesting, secrets) and textually
 * (indentation, deleted / duplicated lines, junk, truncation, anchors and tags). parseSweep must
 * either return a valid sweep or throw a SweepConfigError whose every issue is located inside the
 * text and names a field; nothing else (no TypeError, no ZodError), and no secret echoed.
 */
import test from 'ava';
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { parseSweep, type Sweep } from '../../src/config/sweep.ts';
import { SweepConfigError } from '../../src/config/errors.ts';
import type { PipelineDef } from '../../src/config/pipeline.ts';
import { builtinPipelines } from '../../pipelines/index.ts';

const defs: Record<string, PipelineDef> = Object.fromEntries(Object.entries(builtinPipelines).map(([k, v]) => [k, v.def]));
const CONFIGS = fileURLToPath(new URL('../../configs/', import.meta.url));

// Comments dropped: they hold paths ("configs/x.yaml") a mutation could turn into an input path.
const BASES: string[] = readdirSync(CONFIGS)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .map((f) => readFileSync(join(CONFIGS, f), 'utf8').split('\n').filter((l) => !l.startsWith('#')).join('\n'));
const BASE_OBJECTS = BASES.map((t) => parse(t) as Record<string, unknown>);

// Secrets injected by mutations (test values of the documented shapes, not real credentials).
const SECRETS = [
  'ghp_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8',
  'github_pat_' + '11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz',
  'hf_' + 'AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh',
  'sk-' + 'proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78',
  'AKIA' + 'IOSFODNN7EXAMPLE',
  'xoxb-' + '123456789012-abcdefghijkl',
  'eyJ' + 'hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXRlc3Q',
];
// A plain literal: a secret only under a secret key (SECRET_KEYS), so not checked by shape.
const LITERAL = 'hunter2-password-literal';
const SECRET_KEYS = ['password', 'apiKey', 'hf_token', 'access_key', 'clientSecret'];

// Junk text: YAML-significant characters, letters, digits, whitespace. No "/" or ".", so junk can
// never name an existing input path outside the (empty) sandbox the sweep "lives" in.
const JUNK_CHARS = [...'abcXYZ019 :-[]{},#&*!|>\'"%@`?\t\n\\', '\r\n', '\u00e9', '\u{1F600}', '\uFEFF', '\0'];
const KEYS = [
  'sweep', 'pipeline', 'models', 'tasks', 'methods', 'stages', 'axes', 'zip', 'exclude', 'targets', 'concurrency', 'heartbeatSeconds',
  'description', 'id', 'source', 'name', 'path', 'seed', 'model', 'task', 'method', 'data', 'finetune', 'noise', 'epochs',
  'stages.data.noise', 'stages.finetune.lr', 'stages.finetune.epochs', 'stages.allocate_experts.allocator', 'stages.nope.x',
  'stages.data', 'stages.data.noise.x', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '<<', '', ' ',
  'password', 'ndr', 'layerif', 'datainf', 'smollm2-135m', 'winowhy', 'spam-assassin',
];
const NUMBERS = [0, -1, 1, -0, 0.5, 1e-9, 1.5, 3, 7, 1024, 1025, 2 ** 31, 2 ** 53 + 2, 1e308, -1e308, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];

const junkString = fc.array(fc.constantFrom(...JUNK_CHARS), { maxLength: 12 }).map((a) => a.join(''));
const scalar = fc.oneof(
  fc.constantFrom(...KEYS),
  fc.constantFrom(...NUMBERS),
  fc.boolean(),
  fc.constant(null),
  junkString,
  fc.integer(),
  fc.double(),
  fc.constantFrom(...SECRETS, LITERAL),
);
const { value: junkValue } = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalar,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom(...KEYS), tie('value'), { maxKeys: 3 }),
  ),
}));

type Op =
  | { op: 'set' | 'delete' | 'wrap' | 'unwrap' | 'number' | 'dupId' | 'secret'; pick: number; value: unknown; n: number }
  | { op: 'addKey'; pick: number; key: string; value: unknown }
  | { op: 'axis' | 'zip' | 'exclude' | 'pipeline'; key: string; value: unknown; pick: number; n: number };
type TextOp = { op: 'deleteLine' | 'dupLine' | 'swapLines' | 'indent' | 'tab' | 'insert' | 'cut' | 'truncate' | 'feature'; a: number; b: number; s: string };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constantFrom('set', 'delete', 'wrap', 'unwrap', 'number', 'dupId', 'secret' as const), pick: fc.nat(), value: junkValue, n: fc.nat() }),
  fc.record({ op: fc.constant('addKey' as const), pick: fc.nat(), key: fc.oneof(fc.constantFrom(...KEYS), junkString), value: junkValue }),
  fc.record({ op: fc.constantFrom('axis', 'zip', 'exclude', 'pipeline' as const), key: fc.constantFrom(...KEYS), value: junkValue, pick: fc.nat(), n: fc.nat() }),
) as fc.Arbitrary<Op>;
const FEATURES = ['*a', '&a ', '*nowhere', '!!binary ', '!!omap ', '!!set ', '!!int ', '!foo ', '? ', '---\n', '...\n', '%YAML 1.1\n', '<<: *a\n', '|\n', '>-\n', '"\\u12', "'", '{', '[', ': ', '- ', '\t', '\r'];
const textOpArb: fc.Arbitrary<TextOp> = fc.record({
  op: fc.constantFrom('deleteLine', 'dupLine', 'swapLines', 'indent', 'tab', 'insert', 'cut', 'truncate', 'feature' as const),
  a: fc.nat(),
  b: fc.nat(),
  s: fc.oneof(junkString, fc.constantFrom(...FEATURES)),
});

const caseArb = fc.record({
  base: fc.nat({ max: BASES.length - 1 }),
  ops: fc.array(opArb, { maxLength: 4 }),
  style: fc.constantFrom('original', 'block', 'flow' as const),
  textOps: fc.array(textOpArb, { maxLength: 3 }),
});

/** Paths of every node of a JSON-like value (root excluded). */
function paths(v: unknown, prefix: Array<string | number> = []): Array<Array<string | number>> {
  if (Array.isArray(v)) return v.flatMap((x, i) => [[...prefix, i], ...paths(x, [...prefix, i])]);
  if (v !== null && typeof v === 'object') return Object.keys(v).flatMap((k) => [[...prefix, k], ...paths((v as Record<string, unknown>)[k], [...prefix, k])]);
  return [];
}
function getAt(root: unknown, p: Array<string | number>): unknown {
  return p.reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), root);
}
/** Own-property assignment (so `__proto__` is a key, not the prototype). */
function put(o: unknown, k: string | number, v: unknown): void {
  if (o !== null && typeof o === 'object') Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}
function setAt(root: unknown, p: Array<string | number>, v: unknown): void {
  if (p.length) put(getAt(root, p.slice(0, -1)), p[p.length - 1], v);
}
function deleteAt(root: unknown, p: Array<string | number>): void {
  const parent = getAt(root, p.slice(0, -1));
  if (Array.isArray(parent)) parent.splice(Number(p[p.length - 1]), 1);
  else if (parent !== null && typeof parent === 'object') delete (parent as Record<string, unknown>)[p[p.length - 1]];
}
const clone = <T>(v: T): T => structuredClone(v);

function mutate(obj: Record<string, unknown>, op: Op): void {
  const all = paths(obj);
  const pick = <T>(xs: T[], n: number): T | undefined => (xs.length ? xs[n % xs.length] : undefined);
  const p = pick(all, op.pick);
  switch (op.op) {
    case 'set':
      if (p) setAt(obj, p, clone(op.value));
      break;
    case 'delete':
      if (p) deleteAt(obj, p);
      break;
    case 'wrap':
      if (p) setAt(obj, p, op.n % 2 ? [getAt(obj, p)] : { value: getAt(obj, p) });
      break;
    case 'unwrap': {
      const lists = all.filter((q) => Array.isArray(getAt(obj, q)));
      const q = pick(lists, op.pick);
      if (q) setAt(obj, q, (getAt(obj, q) as unknown[])[0] ?? null);
      break;
    }
    case 'number': {
      const nums = all.filter((q) => typeof getAt(obj, q) === 'number');
      const q = pick(nums, op.pick);
      if (q) setAt(obj, q, NUMBERS[op.n % NUMBERS.length]);
      break;
    }
    case 'dupId': {
      const list = obj[['models', 'tasks', 'methods'][op.n % 3]];
      if (Array.isArray(list) && list.length) list.push(clone(list[op.pick % list.length]));
      break;
    }
    case 'secret': {
      const strings = all.filter((q) => typeof getAt(obj, q) === 'string');
      const q = pick(strings, op.pick);
      const secret = [...SECRETS, LITERAL][op.n % (SECRETS.length + 1)];
      if (q && op.n % 2) setAt(obj, q, secret);
      else {
        const maps = [[], ...all.filter((x) => { const v = getAt(obj, x); return v !== null && typeof v === 'object' && !Array.isArray(v); })];
        put(getAt(obj, pick(maps, op.pick)!), SECRET_KEYS[op.n % SECRET_KEYS.length], secret);
      }
      break;
    }
    case 'addKey': {
      const maps = [[], ...all.filter((x) => { const v = getAt(obj, x); return v !== null && typeof v === 'object' && !Array.isArray(v); })];
      put(getAt(obj, pick(maps, op.pick)!), op.key, clone(op.value));
      break;
    }
    case 'axis': {
      const axes = (obj.axes ??= {}) as Record<string, unknown>;
      const values = [[], [1, 1], ['a', 'b'], ['datainf', 'nope'], [0.1, 0.2], [[1]], op.value, [op.value, op.value], 'seed', null];
      if (axes !== null && typeof axes === 'object') put(axes, op.key, clone(values[op.n % values.length]));
      break;
    }
    case 'zip': {
      const axisNames = Object.keys((obj.axes as object | null) ?? {});
      const zips = [[[op.key, pick(axisNames, op.pick) ?? 'seed']], [[op.key]], [[op.key, op.key]], [axisNames], op.value, [axisNames, axisNames]];
      obj.zip = clone(zips[op.n % zips.length]);
      break;
    }
    case 'exclude': {
      const axes = (obj.axes as Record<string, unknown[]> | null) ?? {};
      const name = pick(Object.keys(axes), op.pick) ?? op.key;
      const val = Array.isArray(axes[name]) ? axes[name][op.n % Math.max(1, axes[name].length)] : op.value;
      const rules = [[{ [name]: val }], [{ [op.key]: op.value }], [{}], op.value, [{ [name]: val }, { [name]: val }]];
      obj.exclude = clone(rules[op.n % rules.length]);
      break;
    }
    case 'pipeline': {
      const names = ['ndr', 'layerif', 'layerjf', '__proto__', 'toString', 'constructor', op.key, op.value];
      obj.pipeline = clone(names[op.n % names.length]);
      break;
    }
  }
}

function textMutate(text: string, t: TextOp): string {
  const lines = text.split('\n');
  const i = t.a % Math.max(1, lines.length);
  const j = t.b % Math.max(1, lines.length);
  const at = t.a % (text.length + 1);
  switch (t.op) {
    case 'deleteLine':
      lines.splice(i, 1);
      return lines.join('\n');
    case 'dupLine':
      lines.splice(i, 0, lines[i] ?? '');
      return lines.join('\n');
    case 'swapLines':
      [lines[i], lines[j]] = [lines[j], lines[i]];
      return lines.join('\n');
    case 'indent': {
      const d = (t.b % 7) - 3; // -3..+3 spaces
      lines[i] = d >= 0 ? ' '.repeat(d) + (lines[i] ?? '') : (lines[i] ?? '').replace(new RegExp(`^ {0,${-d}}`), '');
      return lines.join('\n');
    }
    case 'tab':
      lines[i] = (lines[i] ?? '').replace(/^ +/, '\t');
      return lines.join('\n');
    case 'insert':
    case 'feature':
      return text.slice(0, at) + t.s + text.slice(at);
    case 'cut':
      return text.slice(0, at) + text.slice(at + (t.b % 40));
    case 'truncate':
      return text.slice(0, at);
  }
}

function render(c: { base: number; ops: Op[]; style: 'original' | 'block' | 'flow'; textOps: TextOp[] }): string {
  let text: string;
  if (!c.ops.length && c.style === 'original') text = BASES[c.base];
  else {
    const obj = clone(BASE_OBJECTS[c.base]);
    for (const op of c.ops) mutate(obj, op);
    text = stringify(obj, c.style === 'flow' ? { collectionStyle: 'flow' } : c.style === 'block' ? { collectionStyle: 'block' } : {});
  }
  for (const t of c.textOps) text = textMutate(text, t);
  return text;
}

// The sweep "lives" in an empty sandbox a few folders deep: relative input paths resolve inside it.
const sandboxRoot = await mkdtemp(join(tmpdir(), 'lf-fuzz-'));
test.after.always(() => rm(sandboxRoot, { recursive: true, force: true }));
const sandbox = join(sandboxRoot, 'a', 'b', 'c');
const FILE = join(sandbox, 'sweep.yaml');

/** Checks of one parse; returns 'valid' or 'invalid'. */
async function check(text: string): Promise<'valid' | 'invalid'> {
  let sweep: Sweep;
  try {
    sweep = await parseSweep(FILE, text, defs);
  } catch (err) {
    if (!(err instanceof SweepConfigError)) throw new Error(`parseSweep threw ${(err as Error)?.name}: ${(err as Error)?.stack ?? String(err)}\n--- text:\n${text}`);
    const lines = text.split('\n');
    if (!err.issues.length) throw new Error(`SweepConfigError with no issues\n--- text:\n${text}`);
    for (const i of err.issues) {
      const where = `${JSON.stringify(i)}\n--- text:\n${text}`;
      if (i.file !== FILE) throw new Error(`issue names the wrong file: ${where}`);
      if (!Number.isInteger(i.line) || i.line < 1 || i.line > lines.length) throw new Error(`issue line outside the text: ${where}`);
      if (!Number.isInteger(i.col) || i.col < 1 || i.col > lines[i.line - 1].length + 1) throw new Error(`issue column outside line ${i.line}: ${where}`);
      if (typeof i.field !== 'string' || !i.field) throw new Error(`issue without a field: ${where}`);
      if (typeof i.message !== 'string' || !i.message.trim()) throw new Error(`issue without a message: ${where}`);
      for (const s of SECRETS) if (i.message.includes(s) || i.field.includes(s)) throw new Error(`issue echoes a secret: ${where}`);
    }
    if (!err.message.includes(err.issues[0].field)) throw new Error(`error message does not name the field: ${err.message}`);
    for (const s of SECRETS) if (err.message.includes(s)) throw new Error(`error message echoes a secret: ${err.message}`);
    return 'invalid';
  }
  if (!['ndr', 'layerif'].includes(sweep.pipeline) || typeof sweep.name !== 'string' || !sweep.cells.length)
    throw new Error(`parseSweep returned an invalid sweep: ${JSON.stringify(sweep).slice(0, 300)}\n--- text:\n${text}`);
  const ids = sweep.cells.map((c) => c.id);
  if (new Set(ids).size !== ids.length) throw new Error(`duplicate cell ids\n--- text:\n${text}`);
  for (const s of SECRETS) if (text.includes(s)) throw new Error(`a sweep with a secret was accepted\n--- text:\n${text}`);
  return 'valid';
}

test('the unmutated configs parse', async (t) => {
  for (const text of BASES) t.is(await check(text), 'valid');
});

test('fuzz: 200 mutated sweeps only ever give a valid sweep or located SweepConfigError issues', async (t) => {
  const outcome = { valid: 0, invalid: 0 };
  await fc.assert(
    fc.asyncProperty(caseArb, async (c) => {
      outcome[await check(render(c))]++;
    }),
    { seed: 0x5eed12, numRuns: 200, includeErrorInReport: true },
  );
  t.log(`valid: ${outcome.valid}, invalid: ${outcome.invalid}`);
  t.true(outcome.invalid > 100, 'most mutations are errors');
});

test('fuzz: known crashers are typed errors', async (t) => {
  const base = BASES[0];
  const crashers = [
    base.replace(/^pipeline: \w+/m, 'pipeline: toString'),
    base.replace(/^pipeline: \w+/m, 'pipeline: __proto__'),
    base.replace(/^pipeline: \w+/m, 'pipeline: &p [*p]'),
    base + '\nextra: *nowhere\n',
    base + '\nextra: !!omap [{a: 1}, {a: 2}]\n',
    base + '\na: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n',
    '*x',
    '',
    '\uFEFF',
    '- 1\n',
    base.replace('models:', 'models: &m\n  - *m\nx:'),
  ];
  for (const text of crashers) t.is(await check(text), 'invalid', text);
});
