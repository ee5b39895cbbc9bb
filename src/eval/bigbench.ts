/**
 * BIG-bench multiple-choice and generative tasks as zero-shot documents (SCIENCE.md §3c–§3d), from the task.json
 * files infra/fetch-data.sh extracts from PyPI `bigbench==1.0.0` into `<home>/data/bigbench/`.
 *
 * Prompt convention — BIG-bench's own (bigbench/api/json_task.py, 1.0.0: `default_format_fn`,
 * `JsonTask.load_and_process_json`, `evaluate_fixed_shot` at zero shots), so that a context here is
 * byte-for-byte the `inputs` string BIG-bench scores (and lm-evaluation-harness's BIG-bench tasks
 * read, `doc_to_text: inputs`):
 *
 *   context = task_prefix + example_input_prefix + input
 *             [+ choice_prefix + choice_prefix.join(shuffled options)   when append_choices_to_input]
 *             + example_output_prefix
 *   options = the keys of `target_scores`, bare, in file order (json_task's `sample["choice"]`)
 *   gold    = the indices of every option whose score is 1 (BIG-bench may mark several correct)
 *
 * Defaults where the task does not set them (json_task.py): task_prefix "", example_input_prefix
 * "\nQ: ", example_output_prefix "\nA: ", choice_prefix "\n  choice: ", append_choices_to_input true.
 * The flag is read with Python truthiness, as json_task does (`if append_choices_to_input:`), so a
 * task that writes the string "false" still gets its choices appended, exactly as in BIG-bench.
 * The appended options are `np.random.RandomState(42).permutation(sorted(options))`: sorted by
 * code point, then shuffled by a generator re-seeded with 42 for every example — reproduced here
 * with MT19937 and numpy's legacy bounded-integer shuffle (`legacyPermutation`), so the listed
 * order depends only on the option count. Exact duplicate examples are dropped, keeping the first,
 * as json_task does (its key is `json.dumps(example)`; here a key-ordered serialisation of the same
 * parsed example, numbers compared by value); `dedupe: false` keeps them. Ids keep the example's
 * index in the file (`<task>/<index>`), so dropped duplicates leave gaps. A composite task (a
 * task.json without examples, e.g. logical_deduction) is the concatenation of its subtasks, each
 * formatted with its own prefixes, in sorted subdirectory order as json_task loads them.
 *
 * The options carry no leading delimiter: BIG-bench's model scores the bare target tokenised
 * after the context (its output prefixes end in a space), while lm-evaluation-harness prepends its
 * `target_delimiter` (default " "); the delimiter is the scorer's choice (`requestsOf`, STYLE.md §2),
 * and acc_norm's length is that of the bare option. Few-shot contexts are not built here.
 *
 * JSON objects are read in file order even for integer-like keys (which JSON.parse would move
 * first), so option order matches Python's. A user's own JSONL of {input, target_scores} rows loads
 * with `loadChoiceJsonl` under the same convention and defaults.
 *
 * Generative tasks (every example has `target`, a string or a list of strings, and none has
 * target_scores — e.g. object_counting, arithmetic) load as documents of the same shape, so that the
 * training stages (data → finetune → gradients → influence → moe_finetune) take them unchanged:
 *
 *   context  = task_prefix + example_input_prefix + input + example_output_prefix   (no choices appended)
 *   options  = [targets[0]], gold = [0]        — the training answer is the first target
 *   targets  = every target, generative: true  — kept for scoring
 *   stopString / outputRegex = the task's stop_string / output_regex, when it sets them
 *
 * Scoring (src/eval/generate.ts) follows BIG-bench: the model's greedy output after the context is
 * post-processed as bigbench/models/model_utils.py `postprocess_output` does (`bigbenchPostprocess`:
 * cut after the first stop_string found past index 0, then the first match of output_regex; with
 * neither set, json_task's default output_regex `[^\.\?\!\;\n]+`, i.e. the text up to the first
 * . ? ! ; or newline), then compared with every target (`exactStrMatch`, json_task's
 * exact_str_match: `response in targets`) — here with surrounding whitespace stripped from both
 * sides (Python str.strip()), because the answer is generated after the context whose trailing
 * space the encoding moves onto the answer (src/eval/loglikelihood.ts encodeRequest) and so may
 * begin with a space BIG-bench's model would not emit. BIG-bench's character truncation at
 * max_length is not applied (generation is bounded in tokens). Python regex syntax is read as
 * JavaScript's, with a leading inline flag group such as `(?i)` turned into flags.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { ConfigError, DataError, MissingArtifactError } from '../errors.ts';
import { createRng } from '../data/random.ts';

export interface ChoiceDoc {
  id: string;
  /** Zero-shot context, ending with the output prefix. */
  context: string;
  /** Bare option strings (target_scores keys in file order); a generative document: [its first target]. */
  options: string[];
  /** Indices of every option with target_scores 1 (at least one); a generative document: [0]. */
  gold: number[];
  /**
   * A generative example ({input, target}): scored by exact match of a greedy generation against
   * `targets` (src/eval/generate.ts), trained on `options[0]` = targets[0] like a one-option
   * multiple-choice document. Absent on multiple-choice documents.
   */
  generative?: true;
  /** Every accepted answer (BIG-bench `target`, a string or a list), in file order. */
  targets?: string[];
  /** The task's `stop_string` (BIG-bench post-processing of the generated text), when it sets one. */
  stopString?: string;
  /** The task's `output_regex` (Python syntax, as in the file), when it sets one. */
  outputRegex?: string;
}

/** How an example becomes a context: BIG-bench's task-level formatting fields. */
export interface ChoiceFormat {
  taskPrefix: string;
  inputPrefix: string;
  outputPrefix: string;
  choicePrefix: string;
  appendChoices: boolean;
}

/** json_task.py's defaults for the fields a task leaves out. */
export const BIGBENCH_DEFAULT_FORMAT: Readonly<ChoiceFormat> = Object.freeze({
  taskPrefix: '',
  inputPrefix: '\nQ: ',
  outputPrefix: '\nA: ',
  choicePrefix: '\n  choice: ',
  appendChoices: true,
});

/** json_task's default `random_seed`, which seeds the order of the appended choices. */
export const BIGBENCH_CHOICE_SEED = 42;

export interface BigBenchSubtaskMeta {
  name: string;
  file: string;
  /** Examples in the file, duplicates included. */
  examples: number;
  /** Exact duplicates dropped (0 with `dedupe: false`). */
  duplicates: number;
  format: ChoiceFormat;
}

export interface BigBenchMeta {
  /** task.json files read: one, or one per subtask. */
  files: string[];
  keywords: string[];
  metrics: string[];
  preferredScore?: string;
  /** Examples in the files, duplicates included. */
  examples: number;
  /** Exact duplicates dropped, as BIG-bench's json_task drops them. */
  duplicates: number;
  /** The formatting of a single task. */
  format?: ChoiceFormat;
  /** The subtasks of a composite task, in load order. */
  subtasks?: BigBenchSubtaskMeta[];
  /** True for a generative task (examples with `target` only, scored by exact match). */
  generative?: boolean;
}

export interface BigBenchTask {
  name: string;
  description: string;
  docs: ChoiceDoc[];
  meta: BigBenchMeta;
}

export interface LoadChoiceOptions {
  /** Drop exact duplicate examples, keeping the first (default true, as BIG-bench does). */
  dedupe?: boolean;
}

// ---------------------------------------------------------------------------------------------
// numpy RandomState(seed).permutation(n): MT19937 (init_genrand) and the legacy Fisher–Yates
// shuffle drawing `random_interval(i)` = masked 32-bit draws with rejection, i = n−1 … 1.

function mt19937(seed: number): () => number {
  const mt = new Uint32Array(624);
  mt[0] = seed >>> 0;
  for (let i = 1; i < 624; i++) {
    const s = mt[i - 1] ^ (mt[i - 1] >>> 30);
    mt[i] = (Math.imul(1812433253, s) + i) >>> 0;
  }
  let pos = 624;
  return () => {
    if (pos >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = mt[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      pos = 0;
    }
    let y = mt[pos++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  };
}

/** `np.random.RandomState(seed).permutation(n)` (legacy generator), for n < 2^32. */
export function legacyPermutation(n: number, seed: number = BIGBENCH_CHOICE_SEED): number[] {
  if (!Number.isInteger(n) || n < 0) throw new ConfigError(`legacyPermutation: n = ${n}; expected an integer ≥ 0`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new ConfigError(`legacyPermutation: seed = ${seed}; expected an integer in [0, 2^32)`);
  const next = mt19937(seed);
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    let mask = i;
    mask |= mask >>> 1; mask |= mask >>> 2; mask |= mask >>> 4; mask |= mask >>> 8; mask |= mask >>> 16;
    let j: number;
    do j = (next() & mask) >>> 0; while (j > i);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Python's str ordering: by code point (JS's default sort compares UTF-16 code units). */
function compareCodePoints(a: string, b: string): number {
  const x = a[Symbol.iterator](), y = b[Symbol.iterator]();
  for (;;) {
    const p = x.next(), q = y.next();
    if (p.done || q.done) return p.done && q.done ? 0 : p.done ? -1 : 1;
    const d = p.value.codePointAt(0)! - q.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/** The zero-shot context of one example, as BIG-bench's json_task formats it. */
export function formatChoiceContext(input: string, options: readonly string[], format: ChoiceFormat): string {
  let text = input;
  if (format.appendChoices) {
    const sorted = [...options].sort(compareCodePoints);
    const shown = legacyPermutation(sorted.length).map((i) => sorted[i]);
    text += format.choicePrefix + shown.join(format.choicePrefix);
  }
  return format.taskPrefix + format.inputPrefix + text + format.outputPrefix;
}

// ---------------------------------------------------------------------------------------------
// Generative scoring (BIG-bench 1.0.0: models/model_utils.py postprocess_output, api/json_task.py
// _DEFAULT_REGEX, api/task_metrics.py exact_str_match_fn).

/** json_task's output_regex for a task that sets neither stop_string nor output_regex. */
export const BIGBENCH_DEFAULT_OUTPUT_REGEX = String.raw`[^\.\?\!\;\n]+`;

/** Python's str.isspace set (str.strip()), which differs from JS \s on \x1c-\x1f, \x85 and \ufeff. */
const PY_SPACE = '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_STRIP = new RegExp(`^${PY_SPACE}+|${PY_SPACE}+$`, 'gu');

/** Python's `s.strip()`. */
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, '');
}

/**
 * A Python regular expression (as BIG-bench tasks write them) as a JS RegExp: a leading inline flag
 * group `(?aiLmsux)` becomes flags (i, m, s; a, L, u ignored; x unsupported). At most one capture
 * group, as BIG-bench requires of output_regex (re.findall would return tuples).
 */
export function pythonRegex(source: string): RegExp {
  const m = /^\(\?([aiLmsux]+)\)/.exec(source);
  let flags = '';
  if (m) {
    if (m[1].includes('x')) throw new ConfigError('the verbose flag (?x) is not supported');
    flags = [...new Set(m[1].replace(/[aLu]/g, ''))].join('');
  }
  const re = new RegExp(m ? source.slice(m[0].length) : source, flags);
  const groups = new RegExp(`${re.source}|`, flags).exec('')!.length - 1;
  if (groups > 1) throw new ConfigError(`it has ${groups} capture groups; expected at most one (use (?:…) for the others)`);
  return re;
}

/**
 * BIG-bench's post-processing of a generated text: cut right after the first `stopString` when it
 * is found past index 0 (one at index 0 cuts nothing), then the first match of `outputRegex` (its
 * capture group when it has one; "" when nothing matches). With neither given, the default
 * output_regex applies; an empty outputRegex applies none.
 */
export function bigbenchPostprocess(text: string, f: GenerationFormat = {}): string {
  let out = text;
  if (f.stopString) {
    const i = out.indexOf(f.stopString);
    if (i > 0) out = out.slice(0, i + f.stopString.length);
  }
  const regex = f.outputRegex ?? (f.stopString === undefined ? BIGBENCH_DEFAULT_OUTPUT_REGEX : undefined);
  if (regex) {
    const m = pythonRegex(regex).exec(out);
    out = m ? (m.length > 1 ? m[1] ?? '' : m[0]) : '';
  }
  return out;
}

/**
 * When greedy generation can stop without changing `bigbenchPostprocess` of the final text: once a
 * stop_string occurs past index 0; with the default output_regex, once a character of the answer
 * is followed by one of . ? ! ; or newline (the first match is complete). With only a custom
 * output_regex, never (generation runs to EOS or the token limit).
 */
export function bigbenchStopWhen(f: GenerationFormat = {}): ((text: string) => boolean) | undefined {
  const stop = f.stopString;
  if (stop) return (text) => text.indexOf(stop) > 0;
  if (stop === undefined && f.outputRegex === undefined) return (text) => /[^.?!;\n][.?!;\n]/.test(text);
  return undefined;
}

/** BIG-bench exact_str_match of one response: equal to some target, both stripped of surrounding whitespace. */
export function exactStrMatch(response: string, targets: readonly string[]): boolean {
  const r = pyStrip(response);
  return targets.some((t) => pyStrip(t) === r);
}

// ---------------------------------------------------------------------------------------------
// Order-preserving JSON: objects become Maps (insertion order for every key, a repeated key keeping
// its first place and last value, as Python's dict does). Strings and numbers decode via JSON.parse.

type Json = null | boolean | number | string | Json[] | JsonObject;
type JsonObject = Map<string, Json>;

const WS = /[ \t\n\r]*/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

function parseOrderedJson(text: string, where: string): Json {
  let i = 0;
  const fail = (what: string): never => {
    const line = text.slice(0, i).split('\n').length;
    throw new DataError(`${where}: not valid JSON at line ${line} (offset ${i}): ${what}`);
  };
  const ws = () => { WS.lastIndex = i; WS.exec(text); i = WS.lastIndex; };
  const token = (re: RegExp): string | undefined => {
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) return undefined;
    i = re.lastIndex;
    return m[0];
  };
  const value = (depth: number): Json => {
    if (depth > 512) fail('nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: JsonObject = new Map();
      ws();
      if (text[i] === '}') { i++; return obj; }
      for (;;) {
        ws();
        const k = token(STRING);
        if (k === undefined) fail('expected a string key');
        ws();
        if (text[i++] !== ':') fail("expected ':'");
        obj.set(JSON.parse(k!) as string, value(depth + 1));
        ws();
        const d = text[i++];
        if (d === '}') return obj;
        if (d !== ',') fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr: Json[] = [];
      ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        const d = text[i++];
        if (d === ']') return arr;
        if (d !== ',') fail("expected ',' or ']'");
      }
    }
    if (c === '"') {
      const s = token(STRING);
      if (s === undefined) fail('bad string');
      return JSON.parse(s!) as string;
    }
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) { i += word.length; return v; }
    }
    const n = token(NUMBER);
    if (n === undefined) fail(c === undefined ? 'unexpected end' : `unexpected ${JSON.stringify(c)}`);
    return Number(n);
  };
  const v = value(0);
  ws();
  if (i < text.length) fail('trailing characters');
  return v;
}

/** Key-ordered serialisation of parsed JSON: equal iff Python's json.dumps would be (numbers by value). */
function canonical(v: Json): string {
  if (v instanceof Map) return `{${[...v].map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  return JSON.stringify(v);
}

const isObject = (v: Json | undefined): v is JsonObject => v instanceof Map;

/** Python truthiness of a JSON value, as `if flag:` reads it. */
function pyTruthy(v: Json): boolean {
  if (v === null) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string' || Array.isArray(v)) return v.length > 0;
  return v.size > 0;
}

function stringField(obj: JsonObject, key: string, fallback: string, where: string): string {
  const v = obj.get(key);
  if (v === undefined) return fallback;
  if (typeof v !== 'string') throw new DataError(`${where}: field "${key}" is ${canonical(v)}; expected a string`);
  return v;
}

/** The task's formatting fields over `base` (BIG-bench's defaults unless a JSONL caller overrides them). */
function readFormat(obj: JsonObject, where: string, base: ChoiceFormat = BIGBENCH_DEFAULT_FORMAT): ChoiceFormat {
  const flag = obj.get('append_choices_to_input');
  return {
    taskPrefix: stringField(obj, 'task_prefix', base.taskPrefix, where),
    inputPrefix: stringField(obj, 'example_input_prefix', base.inputPrefix, where),
    outputPrefix: stringField(obj, 'example_output_prefix', base.outputPrefix, where),
    choicePrefix: stringField(obj, 'choice_prefix', base.choicePrefix, where),
    appendChoices: flag === undefined ? base.appendChoices : pyTruthy(flag),
  };
}

interface RawExample { index: number; value: Json; where: string }

/** How a generative task's generated text is cut before scoring (BIG-bench `stop_string` / `output_regex`). */
export interface GenerationFormat { stopString?: string; outputRegex?: string }

function readGenerationFormat(obj: JsonObject, where: string): GenerationFormat {
  const out: GenerationFormat = {};
  const stop = obj.get('stop_string'), regex = obj.get('output_regex');
  if (stop !== undefined && stop !== null) {
    if (typeof stop !== 'string') throw new DataError(`${where}: field "stop_string" is ${canonical(stop)}; expected a string`);
    out.stopString = stop;
  }
  if (regex !== undefined && regex !== null) {
    if (typeof regex !== 'string') throw new DataError(`${where}: field "output_regex" is ${canonical(regex)}; expected a string`);
    try { pythonRegex(regex); } catch (e) { throw new DataError(`${where}: field "output_regex" ${JSON.stringify(regex)}: ${(e as Error).message}`); }
    out.outputRegex = regex;
  }
  return out;
}

const has = (ex: RawExample, key: string) => isObject(ex.value) && ex.value.has(key);

/**
 * Examples → documents. `what` names the task; `idOf` makes an example's id from its index or
 * record. A task is multiple choice when any example has target_scores (then every example must),
 * else generative when any has a target (then every example must); neither is a ConfigError.
 */
function toDocs(examples: RawExample[], what: string, format: ChoiceFormat, dedupe: boolean, idOf: (ex: RawExample) => string, gen: GenerationFormat = {}): { docs: ChoiceDoc[]; duplicates: number; generative: boolean } {
  const generative = !examples.some((ex) => has(ex, 'target_scores'));
  if (generative && !examples.some((ex) => has(ex, 'target'))) {
    throw new ConfigError(`task ${what} has neither multiple-choice examples (field "target_scores") nor generative examples (field "target"); expected one or the other`);
  }
  const seen = new Set<string>();
  const docs: ChoiceDoc[] = [];
  let duplicates = 0;
  for (const ex of examples) {
    const { value, where } = ex;
    if (!isObject(value)) throw new DataError(`${where}: expected a JSON object; got ${canonical(value)}`);
    const input = value.get('input');
    if (typeof input !== 'string') throw new DataError(`${where}: field "input" ${input === undefined ? 'is missing' : 'must be a string'}`);
    const doc = generative ? generativeDoc(value, input, where, format, gen) : choiceDoc(value, input, where, format);
    if (dedupe) {
      const key = canonical(value);
      if (seen.has(key)) { duplicates++; continue; }
      seen.add(key);
    }
    docs.push({ id: idOf(ex), ...doc });
  }
  return { docs, duplicates, generative };
}

function choiceDoc(value: JsonObject, input: string, where: string, format: ChoiceFormat): Omit<ChoiceDoc, 'id'> {
  const scores = value.get('target_scores');
  if (scores === undefined) throw new DataError(`${where}: no "target_scores"; expected every example of a multiple-choice task to have one`);
  if (!isObject(scores)) throw new DataError(`${where}: field "target_scores" must be an object {option: score}`);
  if (scores.size < 2) throw new DataError(`${where}: "target_scores" has ${scores.size} option(s); expected at least 2`);
  const options = [...scores.keys()];
  const gold: number[] = [];
  options.forEach((o, c) => {
    const s = scores.get(o)!;
    if (typeof s !== 'number') throw new DataError(`${where}: target_scores[${JSON.stringify(o)}] is ${canonical(s)}; expected a number`);
    if (s === 1) gold.push(c);
  });
  if (gold.length === 0) throw new DataError(`${where}: no option has target_scores 1; expected at least one correct option`);
  return { context: formatChoiceContext(input, options, format), options, gold };
}

/**
 * A generative example: the context without appended choices (BIG-bench appends them only for
 * target_scores), every target kept for scoring, the first one as the training answer.
 */
function generativeDoc(value: JsonObject, input: string, where: string, format: ChoiceFormat, gen: GenerationFormat): Omit<ChoiceDoc, 'id'> {
  const target = value.get('target');
  if (target === undefined) throw new DataError(`${where}: no "target"; expected every example of a generative task to have one`);
  const targets = Array.isArray(target) ? target : [target];
  if (targets.length === 0) throw new DataError(`${where}: field "target" is an empty list; expected at least one answer`);
  targets.forEach((x, i) => {
    if (typeof x !== 'string') throw new DataError(`${where}: target${Array.isArray(target) ? `[${i}]` : ''} is ${canonical(x)}; expected a string`);
  });
  const all = targets as string[];
  if (pyStrip(all[0]) === '') throw new DataError(`${where}: the first target ${JSON.stringify(all[0])} is empty; expected a non-empty answer (it is the training answer)`);
  return {
    context: formatChoiceContext(input, [], { ...format, appendChoices: false }),
    options: [all[0]],
    gold: [0],
    generative: true,
    targets: all,
    ...(gen.stopString !== undefined ? { stopString: gen.stopString } : {}),
    ...(gen.outputRegex !== undefined ? { outputRegex: gen.outputRegex } : {}),
  };
}

function readJsonFile(path: string): Json {
  return parseOrderedJson(readFileSync(path, 'utf8'), path);
}

// ---------------------------------------------------------------------------------------------

const TASK_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*(\/[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/;

/** Tasks present under `<home>/data/bigbench/`: every `<task>` and `<task>/<subtask>` with a task.json. */
export function listBigBenchTasks(home: string): string[] {
  const root = join(home, 'data', 'bigbench');
  const dirs = (d: string) => (existsSync(d) ? readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort() : []);
  const out: string[] = [];
  for (const t of dirs(root)) {
    if (existsSync(join(root, t, 'task.json'))) out.push(t);
    for (const s of dirs(join(root, t))) if (existsSync(join(root, t, s, 'task.json'))) out.push(`${t}/${s}`);
  }
  return out;
}

interface Loaded { description: string; docs: ChoiceDoc[]; generative: boolean; sub: BigBenchSubtaskMeta; keywords: string[]; metrics: string[]; preferredScore?: string }

function loadSingle(file: string, name: string, dedupe: boolean): Loaded | { composite: JsonObject } {
  const task = readJsonFile(file);
  if (!isObject(task)) throw new DataError(`${file}: expected a JSON object (a BIG-bench task)`);
  const strings = (k: string) => {
    const v = task.get(k);
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  };
  const examples = task.get('examples');
  if (examples === undefined) return { composite: task };
  if (!Array.isArray(examples)) throw new DataError(`${file}: field "examples" must be an array`);
  const format = readFormat(task, file);
  const raw = examples.map((value, index) => ({ index, value, where: `${file}: example ${index}` }));
  const { docs, duplicates, generative } = toDocs(raw, name, format, dedupe, (ex) => `${name}/${ex.index}`, readGenerationFormat(task, file));
  const description = task.get('description');
  const preferred = task.get('preferred_score');
  return {
    description: typeof description === 'string' ? description : '',
    docs,
    generative,
    sub: { name, file, examples: examples.length, duplicates, format },
    keywords: strings('keywords'),
    metrics: strings('metrics'),
    ...(typeof preferred === 'string' ? { preferredScore: preferred } : {}),
  };
}

/**
 * Load BIG-bench task `name` (`task` or `task/subtask`) from `<home>/data/bigbench/<name>/task.json`
 * as zero-shot documents (the conventions above): multiple choice, or generative (meta.generative).
 * Errors: no such file → MissingArtifactError naming the task, the path and the tasks present;
 * no example with target_scores or target → ConfigError; a malformed example → DataError naming the
 * file and the example's index; a composite task mixing both kinds of subtask → DataError.
 */
export function loadBigBenchTask(home: string, name: string, { dedupe = true }: LoadChoiceOptions = {}): BigBenchTask {
  if (!TASK_NAME.test(name)) throw new ConfigError(`BIG-bench task name ${JSON.stringify(name)}; expected "task" or "task/subtask" (letters, digits, _ . -)`);
  const root = join(home, 'data', 'bigbench');
  const file = join(root, name, 'task.json');
  if (!existsSync(file)) {
    const present = listBigBenchTasks(home);
    throw new MissingArtifactError(
      `BIG-bench task "${name}": ${file} does not exist; tasks present under ${root}: ${present.length ? present.join(', ') : 'none'} ` +
        '(infra/fetch-data.sh fetches the pinned ones: run `bash infra/fetch-data.sh`)',
    );
  }
  const single = loadSingle(file, name, dedupe);
  if (!('composite' in single)) {
    const { description, docs, generative, sub, keywords, metrics, preferredScore } = single;
    return {
      name,
      description,
      docs,
      meta: { files: [file], keywords, metrics, ...(preferredScore ? { preferredScore } : {}), examples: sub.examples, duplicates: sub.duplicates, format: sub.format, ...(generative ? { generative } : {}) },
    };
  }
  // A composite task: its subdirectories' task.json files, in sorted order (json_task's subtasks).
  const dir = join(root, name);
  const subNames = readdirSync(dir).filter((s) => statSync(join(dir, s)).isDirectory() && existsSync(join(dir, s, 'task.json'))).sort();
  if (subNames.length === 0) throw new DataError(`${file}: no "examples" and no subtask directories with a task.json; expected one or the other`);
  const parts = subNames.map((s) => {
    const part = loadSingle(join(dir, s, 'task.json'), `${name}/${s}`, dedupe);
    if ('composite' in part) throw new DataError(`${join(dir, s, 'task.json')}: no "examples"; expected a subtask with examples (nested composites are not supported)`);
    return part;
  });
  const kinds = new Set(parts.map((p) => p.generative));
  if (kinds.size > 1) {
    const gen = parts.filter((p) => p.generative).map((p) => p.sub.name);
    throw new DataError(`BIG-bench task "${name}": subtasks ${gen.join(', ')} are generative and the others multiple choice; expected one kind per task (load a subtask on its own, e.g. "${gen[0]}")`);
  }
  const top = single.composite;
  const description = top.get('description');
  const keywords = top.get('keywords');
  return {
    name,
    description: typeof description === 'string' ? description : '',
    docs: parts.flatMap((p) => p.docs),
    meta: {
      files: parts.map((p) => p.sub.file),
      keywords: Array.isArray(keywords) ? keywords.filter((x): x is string => typeof x === 'string') : [],
      metrics: [...new Set(parts.flatMap((p) => p.metrics))],
      examples: parts.reduce((a, p) => a + p.sub.examples, 0),
      duplicates: parts.reduce((a, p) => a + p.sub.duplicates, 0),
      subtasks: parts.map((p) => p.sub),
      ...(parts[0].generative ? { generative: true } : {}),
    },
  };
}

export interface ChoiceJsonlOptions extends LoadChoiceOptions {
  /** Name for ids and messages (default: the file name without .jsonl). */
  name?: string;
  /** Formatting fields over BIG-bench's defaults (e.g. { appendChoices: false }). */
  format?: Partial<ChoiceFormat>;
}

/**
 * A user's multiple-choice data in BIG-bench's example shape, one JSON object per line
 * ({"input": str, "target_scores": {option: score}}, optional "id": str; blank lines skipped) — or
 * generative rows ({"input": str, "target": str | str[]}, scored with BIG-bench's default output_regex),
 * formatted like a BIG-bench task with the defaults unless `format` overrides them.
 * Ids: the row's "id" when it is a string, else `<name>/<row index>` (row index counts non-blank
 * lines from 0). A bad row throws DataError naming the file, line and example index; an unreadable
 * file, MissingArtifactError.
 */
export function loadChoiceJsonl(path: string, { name, format, dedupe = true }: ChoiceJsonlOptions = {}): { name: string; docs: ChoiceDoc[]; duplicates: number; generative: boolean } {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) { throw new MissingArtifactError(`choice dataset ${path}: cannot read (${(e as Error).message})`, { cause: e }); }
  const taskName = name ?? basename(path).replace(/\.jsonl$/, '');
  const rows: RawExample[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    const where = `${path}:${i + 1}: example ${rows.length}`;
    rows.push({ index: rows.length, value: parseOrderedJson(line, where), where });
  });
  if (rows.length === 0) throw new DataError(`${path}: no examples; expected at least one JSONL row`);
  const fmt: ChoiceFormat = { ...BIGBENCH_DEFAULT_FORMAT, ...format };
  const { docs, duplicates, generative } = toDocs(rows, taskName, fmt, dedupe, (ex) => {
    const id = isObject(ex.value) ? ex.value.get('id') : undefined;
    return typeof id === 'string' ? id : `${taskName}/${ex.index}`;
  });
  const ids = new Set<string>();
  for (const d of docs) {
    if (ids.has(d.id)) throw new DataError(`${path}: id ${JSON.stringify(d.id)} appears twice; expected unique ids`);
    ids.add(d.id);
  }
  return { name: taskName, docs, duplicates, generative };
}

// ---------------------------------------------------------------------------------------------

export interface ChoiceSplitOptions {
  /** Training (influence-gradient) set size; default 300, LayerIF's IF subset. */
  train?: number;
  /** IF-validation set size; default 50, LayerIF's IF subset. */
  validation?: number;
  /** Test set size; default: every remaining document. */
  test?: number;
  seed: number;
}

export interface ChoiceSplits {
  train: ChoiceDoc[];
  validation: ChoiceDoc[];
  test: ChoiceDoc[];
  seed: number;
}

/** LayerIF's influence subsets: 300 training × 50 validation examples (SCIENCE.md §3). */
export const LAYERIF_SPLIT_SIZES = Object.freeze({ train: 300, validation: 50 });

/**
 * Seeded, disjoint train / IF-validation / test splits: one `createRng(seed)` permutation of the
 * documents cut into train, validation and test in that order (each split in permutation order).
 * Sizes are integers ≥ 0 (test ≥ 1 when given); sizes that do not fit in the documents throw
 * ConfigError naming the field, and an empty default test set does too.
 */
export function choiceSplits(docs: readonly ChoiceDoc[], { train = LAYERIF_SPLIT_SIZES.train, validation = LAYERIF_SPLIT_SIZES.validation, test, seed }: ChoiceSplitOptions): ChoiceSplits {
  const n = docs.length;
  const check = (field: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new ConfigError(`choiceSplits: ${field} = ${v}; expected an integer ≥ ${min}`);
  };
  check('train', train, 0);
  check('validation', validation, 0);
  if (test !== undefined) check('test', test, 1);
  if (train > n) throw new ConfigError(`choiceSplits: train = ${train} does not fit in ${n} documents`);
  if (train + validation > n) throw new ConfigError(`choiceSplits: validation = ${validation} does not fit in the ${n - train} documents left after train = ${train}`);
  const left = n - train - validation;
  if (test !== undefined && test > left) throw new ConfigError(`choiceSplits: test = ${test} does not fit in the ${left} documents left after train = ${train} and validation = ${validation}`);
  if (test === undefined && left === 0) throw new ConfigError(`choiceSplits: test would be empty (${n} documents, train = ${train}, validation = ${validation}); expected at least one test document`);
  const order = createRng(seed).permutation(n);
  const pick = (from: number, count: number) => order.slice(from, from + count).map((i) => docs[i]);
  return { train: pick(0, train), validation: pick(train, validation), test: pick(train + validation, test ?? left), seed };
}
