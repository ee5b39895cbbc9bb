/**
 * BIG-bench multiple-choice and generative tasks (src/eval/bigbench.ts) on the real task files
 * infra/fetch-data.sh extracts from PyPI bigbench==1.0.0 (the tests fail without them; CI runs the
 * install step first): counts, contexts identical to BIG-bench's own json_task formatting (one
 * hand-checked prompt pinned verbatim, every task pinned by a hash of the output of BIG-bench's code
 * — see test/fixtures/scripts/eval_bigbench.py, and eval_generate.py for the generative
 * object_counting), several correct options, generative targets and their errors, the JSONL path on
 * committed fixtures, and the seeded splits.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigError, DataError, MissingArtifactError } from '../../src/errors.ts';
import {
  BIGBENCH_DEFAULT_FORMAT,
  type BigBenchTask,
  type ChoiceDoc,
  choiceSplits,
  formatChoiceContext,
  legacyPermutation,
  listBigBenchTasks,
  loadBigBenchTask,
  loadChoiceJsonl,
} from '../../src/eval/bigbench.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const HOME = resolve(process.env.LAYERFLOW_HOME ?? join(ROOT, '.layerflow'));
const FIXTURES = join(ROOT, 'test/fixtures/eval');

function task(name: string, options?: { dedupe?: boolean }): BigBenchTask {
  const file = join(HOME, 'data/bigbench', name, 'task.json');
  if (!existsSync(file)) throw new Error(`BIG-bench task file missing at ${file}: run \`bash infra/fetch-data.sh\` (part of infra/install.sh) before the tests`);
  return loadBigBenchTask(HOME, name, options);
}

const digest = (docs: ChoiceDoc[]) => createHash('sha256').update(JSON.stringify(docs.map((d) => [d.context, d.options]))).digest('hex');

/** A temporary LayerFlow home holding the given task.json files (name → JSON value or text), removed after the test. */
function fakeHome(t: ExecutionContext, tasks: Record<string, unknown>): string {
  const home = mkdtempSync(join(tmpdir(), 'layerflow-bigbench-'));
  t.teardown(() => rmSync(home, { recursive: true, force: true }));
  for (const [name, json] of Object.entries(tasks)) {
    mkdirSync(join(home, 'data/bigbench', name), { recursive: true });
    writeFileSync(join(home, 'data/bigbench', name, 'task.json'), typeof json === 'string' ? json : JSON.stringify(json));
  }
  return home;
}

test('numpy RandomState(42).permutation(n), which orders the appended choices, is reproduced', (t) => {
  // From numpy (test/fixtures/scripts/eval_bigbench.py prints them).
  const numpy = [[0], [1, 0], [0, 1, 2], [1, 3, 0, 2], [1, 4, 2, 0, 3], [0, 1, 5, 2, 4, 3], [0, 1, 5, 2, 4, 3, 6], [1, 5, 0, 7, 2, 4, 3, 6], [7, 1, 5, 0, 8, 2, 4, 3, 6], [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]];
  numpy.forEach((p, i) => t.deepEqual(legacyPermutation(i + 1), p, `n = ${i + 1}`));
  t.deepEqual(legacyPermutation(0), []);
});

test('social_iqa: 1954 examples in the file, 19 exact duplicates dropped as BIG-bench does, 3 options (4 with 2)', (t) => {
  const s = task('social_iqa');
  t.is(s.name, 'social_iqa');
  t.is(s.meta.examples, 1954);
  t.is(s.meta.duplicates, 19);
  t.is(s.docs.length, 1935);
  t.is(task('social_iqa', { dedupe: false }).docs.length, 1954);
  const byCount = new Map<number, number>();
  for (const d of s.docs) byCount.set(d.options.length, (byCount.get(d.options.length) ?? 0) + 1);
  t.deepEqual([...byCount].sort(), [[2, 4], [3, 1931]]);
  t.true(s.docs.every((d) => d.gold.length === 1));
  t.deepEqual(s.meta.format, BIGBENCH_DEFAULT_FORMAT); // only append_choices_to_input: true, the default
  // Example 0, hand-checked against json_task.default_format_fn: input prefix "\nQ: ", the input (its
  // trailing space kept), the options sorted ("Find…" < "Go…" < "Make…") and permuted by
  // RandomState(42).permutation(3) = [0, 1, 2], each after "\n  choice: ", then the output prefix "\nA: ".
  const d = s.docs[0];
  t.is(d.id, 'social_iqa/0');
  t.is(
    d.context,
    "\nQ: Tracy didn't go home that evening and resisted Riley's attacks. What does Tracy need to do before this? " +
      '\n  choice: Find somewhere to go\n  choice: Go home and see Riley\n  choice: Make a new plan\nA: ',
  );
  t.deepEqual(d.options, ['Make a new plan', 'Go home and see Riley', 'Find somewhere to go']); // file order, bare
  t.deepEqual(d.gold, [2]);
});

test('every pinned task: contexts and options identical to BIG-bench json_task output (sha256 pinned), counts', (t) => {
  // name → [documents, examples in the file, sha256 of JSON [[context, options], …] from test/fixtures/scripts/eval_bigbench.py]
  const pinned: Record<string, [number, number, string]> = {
    social_iqa: [1935, 1954, '477b9fb26bb26dfa5894bf4ff4d339953f980439f3f34a240fd01c4f21a77cda'],
    strategyqa: [2289, 2290, '10da6972cb0340c41a03697c871b212bf0439dd5c9e3fe5b04ba4a1f67b01cd9'],
    winowhy: [2862, 2865, '4fc70bb36db6f6013e86e5c0d70c7a3edd3d029f3a5fde49a538f167a8dd5539'],
    sports_understanding: [986, 1000, '81fa5182cdc87a12bcfd29d7862190b5bdfaa7b64b8849e33f2b3e520f44833e'],
    physical_intuition: [81, 81, '15fae5440a91cd13f35240628026c608621a89210c2e0fa12bcd533979e08fa9'],
    'logical_deduction/three_objects': [300, 300, 'd746063ac17776ef8f22bc6fffa896d0a8b153e773581750f635eef86b4caf77'],
    'logical_deduction/five_objects': [500, 500, '1bf506ae37835c18c3e9b793d0734bddd27cddbdb491c5940d9089e1cf8a0b86'],
    'logical_deduction/seven_objects': [700, 700, 'fe8d6e228e95992c9fade4c4322b15a2a6e29d6c05b3590269f0b0e25791518e'],
    english_proverbs: [34, 34, '4b9c1cedc0b46dee61ff66cc3bc4e2240dfeda3476984ca0df71a08d6b441e73'],
  };
  for (const [name, [docs, examples, sha]] of Object.entries(pinned)) {
    const b = task(name);
    t.is(b.docs.length, docs, name);
    t.is(b.meta.examples, examples, name);
    t.is(digest(b.docs), sha, name);
    t.true(b.docs.every((d) => d.gold.length >= 1 && d.gold.every((g) => g >= 0 && g < d.options.length)), name);
  }
  // Task-level prefixes are honoured: winowhy sets all three and turns the appended choices off.
  const w = task('winowhy');
  t.deepEqual(w.meta.format, { taskPrefix: 'Please answer the following questions about which words certain pronouns refer to.\n', inputPrefix: '\n', outputPrefix: '\nThe above reasoning is ', choicePrefix: '\n  choice: ', appendChoices: false });
  t.true(w.docs[0].context.startsWith(w.meta.format!.taskPrefix + '\nThe city councilmen refused the demonstrators a permit'));
  t.true(w.docs[0].context.endsWith("are more likely to fear.\nThe above reasoning is "));
});

test('logical_deduction is a composite task: its three subtasks in sorted order, each with its own prefixes', (t) => {
  const ld = task('logical_deduction');
  t.is(ld.docs.length, 1500);
  t.deepEqual(ld.meta.subtasks!.map((s) => [s.name, s.examples]), [['logical_deduction/five_objects', 500], ['logical_deduction/seven_objects', 700], ['logical_deduction/three_objects', 300]]);
  t.is(ld.meta.format, undefined);
  t.is(ld.docs[0].id, 'logical_deduction/five_objects/0');
  t.deepEqual(ld.docs.slice(1200).map((d) => d.context), task('logical_deduction/three_objects').docs.map((d) => d.context));
  const first = ld.docs[0];
  t.is(
    first.context,
    'The following paragraphs each describe a set of five objects arranged in a fixed order. The statements are logically consistent within each paragraph.\n\n' +
      'On a shelf, there are five books: a gray book, a red book, a purple book, a blue book, and a black book. The red book is to the right of the gray book. The black book is to the left of the blue book. The blue book is to the left of the gray book. The purple book is the second from the right. ',
  );
  t.is(first.options.length, 5);
});

test('english_proverbs (the small CI task): every document equals BIG-bench json_task output; several correct options are all gold', (t) => {
  const ref = JSON.parse(readFileSync(join(FIXTURES, 'bigbench_english_proverbs.json'), 'utf8')) as Array<{ context: string; options: string[]; target: string[] }>;
  const e = task('english_proverbs');
  t.is(e.docs.length, ref.length);
  e.docs.forEach((d, i) => {
    t.is(d.context, ref[i].context, `example ${i}`);
    t.deepEqual(d.options, ref[i].options, `example ${i}`);
    t.true(d.gold.map((g) => d.options[g]).includes(ref[i].target[0]), `example ${i}: BIG-bench's target is gold`);
  });
  const multi = e.docs.filter((d) => d.gold.length > 1).map((d) => d.id);
  t.deepEqual(multi, ['english_proverbs/28', 'english_proverbs/29', 'english_proverbs/30', 'english_proverbs/31', 'english_proverbs/32', 'english_proverbs/33']);
  const d = e.docs[28];
  const raw = JSON.parse(readFileSync(join(HOME, 'data/bigbench/english_proverbs/task.json'), 'utf8')).examples[28].target_scores as Record<string, number>;
  t.deepEqual(d.gold, d.options.flatMap((o, c) => (raw[o] === 1 ? [c] : [])));
  t.true(d.gold.length >= 2);
});

test('errors: unknown task, a task with neither kind of target, malformed example, bad name', (t) => {
  const ok = { input: 'Q?', target_scores: { yes: 1, no: 0 } };
  const home = fakeHome(t, {
    gen: { name: 'gen', description: 'neither', examples: [{ input: '1+1=', answer: '2' }] },
    bad: { name: 'bad', description: 'malformed', examples: [ok, { input: 3, target_scores: { a: 1, b: 0 } }] },
    mixed: { name: 'mixed', examples: [ok, { input: 'x', target: 'y' }] },
    nogold: { name: 'nogold', examples: [ok, ok, { input: 'x', target_scores: { a: 0.5, b: 0 } }] },
    'broken/sub': '{"examples": [',
  });
  t.deepEqual(listBigBenchTasks(home), ['bad', 'broken/sub', 'gen', 'mixed', 'nogold']);
  const missing = t.throws(() => loadBigBenchTask(home, 'nope'), { instanceOf: MissingArtifactError })!;
  t.regex(missing.message, /BIG-bench task "nope": .*nope\/task\.json does not exist; tasks present under .*: bad, broken\/sub, gen, mixed, nogold .*bash infra\/fetch-data\.sh/);
  t.throws(() => loadBigBenchTask(home, 'gen'), { instanceOf: ConfigError, message: 'task gen has neither multiple-choice examples (field "target_scores") nor generative examples (field "target"); expected one or the other' });
  t.throws(() => loadBigBenchTask(home, 'bad'), { instanceOf: DataError, message: /bad\/task\.json: example 1: field "input" must be a string/ });
  t.throws(() => loadBigBenchTask(home, 'mixed'), { instanceOf: DataError, message: /mixed\/task\.json: example 1: no "target_scores"/ });
  t.throws(() => loadBigBenchTask(home, 'nogold'), { instanceOf: DataError, message: /nogold\/task\.json: example 2: no option has target_scores 1/ });
  t.throws(() => loadBigBenchTask(home, 'broken/sub'), { instanceOf: DataError, message: /broken\/sub\/task\.json: not valid JSON at line 1/ });
  t.throws(() => loadBigBenchTask(home, '../gen'), { instanceOf: ConfigError, message: /expected "task" or "task\/subtask"/ });
  t.throws(() => loadBigBenchTask(join(home, 'elsewhere'), 'gen'), { instanceOf: MissingArtifactError, message: /tasks present under .*: none/ });
});

test('generative tasks: documents with the first target as the only option, every target kept, the task\'s prefixes, stop_string and output_regex', (t) => {
  const home = fakeHome(t, {
    arith: {
      name: 'arith', description: 'generative', metrics: ['exact_str_match'], preferred_score: 'exact_str_match',
      task_prefix: 'Compute.\n', example_input_prefix: '\nIn: ', example_output_prefix: '\nOut: ', output_regex: '[-+]?\\d+',
      examples: [{ input: '1+1=', target: '2' }, { input: '2+2=', target: ['4', 'four'] }, { input: '1+1=', target: '2' }, { input: '3+3=', target: ['6'], comment: 'x' }],
    },
    lines: { name: 'lines', examples: [{ input: 'Say hi.', target: 'hi' }], stop_string: '\n' },
    plain: { name: 'plain', examples: [{ input: 'Count: a, b.', target: ['two', '2'] }] },
  });
  const a = loadBigBenchTask(home, 'arith');
  t.true(a.meta.generative);
  t.deepEqual([a.meta.examples, a.meta.duplicates, a.docs.length], [4, 1, 3]); // exact duplicates dropped, as json_task does
  t.deepEqual(a.docs[0], { id: 'arith/0', context: 'Compute.\n\nIn: 1+1=\nOut: ', options: ['2'], gold: [0], generative: true, targets: ['2'], outputRegex: '[-+]?\\d+' });
  t.deepEqual(a.docs.map((d) => [d.id, d.options, d.targets]), [['arith/0', ['2'], ['2']], ['arith/1', ['4'], ['4', 'four']], ['arith/3', ['6'], ['6']]]);
  t.deepEqual(a.meta.metrics, ['exact_str_match']);
  t.deepEqual(loadBigBenchTask(home, 'lines').docs[0], { id: 'lines/0', context: '\nQ: Say hi.\nA: ', options: ['hi'], gold: [0], generative: true, targets: ['hi'], stopString: '\n' });
  // BIG-bench's defaults; no choices appended (json_task appends them only for target_scores).
  t.deepEqual(loadBigBenchTask(home, 'plain').docs[0], { id: 'plain/0', context: '\nQ: Count: a, b.\nA: ', options: ['two'], gold: [0], generative: true, targets: ['two', '2'] });
  t.is(loadBigBenchTask(home, 'plain').meta.generative, true);
  t.is(task('english_proverbs').meta.generative, undefined);
  t.true(task('english_proverbs').docs.every((d) => !('generative' in d) && !('targets' in d))); // multiple-choice documents unchanged
});

test('generative tasks: malformed targets, regexes and mixed composites are DataErrors naming the file and example', (t) => {
  const home = fakeHome(t, {
    num: { examples: [{ input: 'a', target: 'x' }, { input: 'b', target: 3 }] },
    inlist: { examples: [{ input: 'a', target: ['x', 2] }] },
    empty: { examples: [{ input: 'a', target: [] }] },
    blank: { examples: [{ input: 'a', target: [' ', 'x'] }] },
    missing: { examples: [{ input: 'a', target: 'x' }, { input: 'b' }] },
    regex: { output_regex: '(', examples: [{ input: 'a', target: 'x' }] },
    groups: { output_regex: '(a)(b)', examples: [{ input: 'a', target: 'x' }] },
    stop: { stop_string: 4, examples: [{ input: 'a', target: 'x' }] },
    flags: { output_regex: '(?i)yes|no', examples: [{ input: 'a', target: 'x' }] },
    both: { name: 'both' },
    'both/gen': { examples: [{ input: 'a', target: 'x' }] },
    'both/mc': { examples: [{ input: 'a', target_scores: { x: 1, y: 0 } }] },
    pair: { name: 'pair' },
    'pair/one': { examples: [{ input: 'a', target: 'x' }] },
    'pair/two': { examples: [{ input: 'b', target: ['y', 'z'] }], stop_string: '.' },
  });
  t.throws(() => loadBigBenchTask(home, 'num'), { instanceOf: DataError, message: /num\/task\.json: example 1: target is 3; expected a string/ });
  t.throws(() => loadBigBenchTask(home, 'inlist'), { instanceOf: DataError, message: /inlist\/task\.json: example 0: target\[1\] is 2; expected a string/ });
  t.throws(() => loadBigBenchTask(home, 'empty'), { instanceOf: DataError, message: /empty\/task\.json: example 0: field "target" is an empty list/ });
  t.throws(() => loadBigBenchTask(home, 'blank'), { instanceOf: DataError, message: /blank\/task\.json: example 0: the first target " " is empty/ });
  t.throws(() => loadBigBenchTask(home, 'missing'), { instanceOf: DataError, message: /missing\/task\.json: example 1: no "target"/ });
  t.throws(() => loadBigBenchTask(home, 'regex'), { instanceOf: DataError, message: /regex\/task\.json: field "output_regex" "\(":/ });
  t.throws(() => loadBigBenchTask(home, 'groups'), { instanceOf: DataError, message: /2 capture groups/ });
  t.throws(() => loadBigBenchTask(home, 'stop'), { instanceOf: DataError, message: /field "stop_string" is 4; expected a string/ });
  t.is(loadBigBenchTask(home, 'flags').docs[0].outputRegex, '(?i)yes|no');
  t.throws(() => loadBigBenchTask(home, 'both'), { instanceOf: DataError, message: /subtasks both\/gen are generative and the others multiple choice/ });
  // A composite generative task: each subtask with its own stop_string.
  const pair = loadBigBenchTask(home, 'pair');
  t.true(pair.meta.generative);
  t.deepEqual(pair.docs.map((d) => [d.id, d.targets, d.stopString]), [['pair/one/0', ['x'], undefined], ['pair/two/0', ['y', 'z'], '.']]);
});

test('object_counting (the pinned generative task): documents identical to BIG-bench json_task output (sha256 pinned), two targets each', (t) => {
  const ref = JSON.parse(readFileSync(join(FIXTURES, 'generate_tiny-llama.json'), 'utf8')).bigbench.object_counting as { documents: number; sha256: string; first: { context: string; targets: string[] }[] };
  const o = task('object_counting');
  t.true(o.meta.generative);
  t.is(o.docs.length, ref.documents);
  t.is(o.meta.duplicates, 0);
  t.deepEqual(o.meta.metrics, ['exact_str_match']);
  const compact = JSON.stringify(o.docs.map((d) => [d.context, d.targets]));
  t.is(createHash('sha256').update(compact).digest('hex'), ref.sha256);
  t.deepEqual(o.docs.slice(0, 3).map((d) => ({ context: d.context, targets: d.targets })), ref.first);
  t.deepEqual(o.docs[0], { id: 'object_counting/0', context: '\nQ: I have a clarinet, a violin, and a flute. How many musical instruments do I have?\nA: ', options: ['three'], gold: [0], generative: true, targets: ['three', '3'] });
  t.true(o.docs.every((d) => d.targets!.length === 2 && d.options[0] === d.targets![0] && d.stopString === undefined && d.outputRegex === undefined));
  // LayerIF's 300 × 50 fit, 650 documents held out.
  const sp = choiceSplits(o.docs, { seed: 0 });
  t.deepEqual([sp.train.length, sp.validation.length, sp.test.length], [300, 50, 650]);
});

test('task formatting fields: defaults, overrides, Python truthiness of append_choices_to_input, option order of integer-like keys', (t) => {
  // Written as text: a JS object literal (and so JSON.stringify) would itself move "2" before "10".
  const ex = '{"input": "Pick.", "target_scores": {"10": 0, "2": 1, "b": 0}}';
  const home = fakeHome(t, {
    plain: `{"examples": [${ex}]}`,
    off: `{"append_choices_to_input": false, "examples": [${ex}]}`,
    str: `{"append_choices_to_input": "false", "examples": [${ex}]}`, // a non-empty string: Python appends the choices
    custom: `{"task_prefix": "T.", "example_input_prefix": "\\nIn: ", "example_output_prefix": "\\nOut:", "choice_prefix": " | ", "examples": [${ex}]}`,
  });
  // Options keep file order ("10" before "2", unlike JSON.parse); appended in code-point order
  // ["10", "2", "b"] permuted by [0, 1, 2].
  const plain = loadBigBenchTask(home, 'plain').docs[0];
  t.deepEqual(plain.options, ['10', '2', 'b']);
  t.deepEqual(plain.gold, [1]);
  t.is(plain.context, '\nQ: Pick.\n  choice: 10\n  choice: 2\n  choice: b\nA: ');
  t.is(loadBigBenchTask(home, 'off').docs[0].context, '\nQ: Pick.\nA: ');
  t.is(loadBigBenchTask(home, 'str').docs[0].context, plain.context);
  t.is(loadBigBenchTask(home, 'custom').docs[0].context, 'T.\nIn: Pick. | 10 | 2 | b\nOut:');
  // Two options: RandomState(42).permutation(2) = [1, 0], so the sorted pair is listed reversed.
  t.is(formatChoiceContext('Sure?', ['Yes', 'No'], BIGBENCH_DEFAULT_FORMAT), '\nQ: Sure?\n  choice: Yes\n  choice: No\nA: ');
});

test('loadChoiceJsonl: a user JSONL in the BIG-bench example shape, with defaults, ids, duplicates and multi-gold', (t) => {
  const mini = loadChoiceJsonl(join(FIXTURES, 'choice-mini.jsonl'));
  t.is(mini.name, 'choice-mini');
  t.is(mini.duplicates, 1);
  t.deepEqual(mini.docs.map((d) => d.id), ['sky', 'choice-mini/1', 'choice-mini/2']);
  t.deepEqual(mini.docs[0], { id: 'sky', context: '\nQ: What colour is the sky on a clear day?\n  choice: blue\n  choice: green\n  choice: red\nA: ', options: ['blue', 'green', 'red'], gold: [0] });
  // Four options: sorted ["10", "2", "4", "7"], permutation(4) = [1, 3, 0, 2].
  t.deepEqual(mini.docs[1], { id: 'choice-mini/1', context: '\nQ: Which numbers are even?\n  choice: 2\n  choice: 7\n  choice: 10\n  choice: 4\nA: ', options: ['10', '2', '4', '7'], gold: [0, 1, 2] });
  t.is(mini.docs[2].context, '\nQ: Is water wet?\n  choice: yes\n  choice: no\nA: ');
  const all = loadChoiceJsonl(join(FIXTURES, 'choice-mini.jsonl'), { dedupe: false, name: 'mine', format: { appendChoices: false, outputPrefix: '\nAnswer:' } });
  t.deepEqual(all.docs.map((d) => d.id), ['sky', 'mine/1', 'mine/2', 'mine/3']);
  t.is(all.docs[3].context, '\nQ: Is water wet?\nAnswer:');
  t.throws(() => loadChoiceJsonl(join(FIXTURES, 'choice-bad.jsonl')), { instanceOf: DataError, message: /choice-bad\.jsonl:2: example 1: no option has target_scores 1/ });
  t.throws(() => loadChoiceJsonl(join(FIXTURES, 'no-such.jsonl')), { instanceOf: MissingArtifactError, message: /no-such\.jsonl: cannot read/ });
  t.false(mini.generative);
  // Generative rows ({input, target}) load the same way.
  const dir = mkdtempSync(join(tmpdir(), 'layerflow-genjsonl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'gen.jsonl'), '{"input": "2+2=", "target": ["4", "four"], "id": "q1"}\n\n{"input": "1+2=", "target": "3"}\n');
  const gen = loadChoiceJsonl(join(dir, 'gen.jsonl'));
  t.true(gen.generative);
  t.deepEqual(gen.docs, [
    { id: 'q1', context: '\nQ: 2+2=\nA: ', options: ['4'], gold: [0], generative: true, targets: ['4', 'four'] },
    { id: 'gen/1', context: '\nQ: 1+2=\nA: ', options: ['3'], gold: [0], generative: true, targets: ['3'] },
  ]);
});

test('choiceSplits: LayerIF sizes by default, seeded, deterministic, disjoint; sizes that do not fit name the field', (t) => {
  const docs = task('social_iqa').docs;
  const a = choiceSplits(docs, { seed: 7 });
  t.deepEqual([a.train.length, a.validation.length, a.test.length], [300, 50, 1585]);
  const ids = (s: ChoiceDoc[]) => s.map((d) => d.id);
  const b = choiceSplits(docs, { seed: 7 });
  t.deepEqual([ids(a.train), ids(a.validation), ids(a.test)], [ids(b.train), ids(b.validation), ids(b.test)]);
  t.notDeepEqual(ids(choiceSplits(docs, { seed: 8 }).train), ids(a.train));
  const all = [...ids(a.train), ...ids(a.validation), ...ids(a.test)];
  t.is(new Set(all).size, docs.length); // disjoint and covering
  const c = choiceSplits(docs, { train: 100, validation: 20, test: 30, seed: 7 });
  t.deepEqual([c.train.length, c.validation.length, c.test.length], [100, 20, 30]);
  t.deepEqual(ids(c.train), ids(a.train).slice(0, 100)); // one permutation per seed, cut in order
  t.throws(() => choiceSplits(docs, { train: 2000, seed: 1 }), { instanceOf: ConfigError, message: /train = 2000 does not fit in 1935 documents/ });
  t.throws(() => choiceSplits(docs, { train: 1900, validation: 50, seed: 1 }), { instanceOf: ConfigError, message: /validation = 50 does not fit/ });
  t.throws(() => choiceSplits(docs, { test: 1600, seed: 1 }), { instanceOf: ConfigError, message: /test = 1600 does not fit in the 1585 documents left/ });
  t.throws(() => choiceSplits(docs, { train: 1885, validation: 50, seed: 1 }), { instanceOf: ConfigError, message: /test would be empty/ });
  t.throws(() => choiceSplits(docs, { train: -1, seed: 1 }), { instanceOf: ConfigError, message: /train = -1/ });
  t.throws(() => choiceSplits(docs, { validation: 2.5, seed: 1 }), { instanceOf: ConfigError, message: /validation = 2.5/ });
  t.throws(() => choiceSplits(docs, { seed: 1.5 }), { instanceOf: ConfigError, message: /seed/ });
  // physical_intuition (81 documents) cannot hold LayerIF's 300 × 50: the caller must size it.
  t.throws(() => choiceSplits(task('physical_intuition').docs, { seed: 0 }), { instanceOf: ConfigError, message: /train = 300 does not fit in 81/ });
});
