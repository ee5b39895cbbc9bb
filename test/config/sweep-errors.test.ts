import test, { type ExecutionContext } from 'ava';
import { mkdtemp, writeFile, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { loadSweep } from '../../src/config/sweep.ts';
import { SweepConfigError } from '../../src/config/errors.ts';
import { loadPipelineDefs } from '../helpers/pipelines.ts';

const pipelineDefs = await loadPipelineDefs();

const VALID = `sweep: s
pipeline: demo
models:
  - id: a
    transform: upper
  - id: b
    transform: rot13
tasks:
  - id: t
    data: data.txt
axes:
  model: [a, b]
  seed: [1, 2]
`;

async function dir(t: ExecutionContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'lf-cfg-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  await writeFile(join(d, 'data.txt'), 'hello\nworld\n');
  return d;
}

async function issuesOf(t: ExecutionContext, yaml: string) {
  const d = await dir(t);
  const file = join(d, 'sweep.yaml');
  await writeFile(file, yaml);
  try {
    await loadSweep(file, pipelineDefs);
  } catch (err) {
    if (err instanceof SweepConfigError) return { file, issues: err.issues, message: err.message };
    throw err;
  }
  throw new Error('expected the sweep to be rejected');
}

test('a valid sweep expands to deterministic cells with defaults applied', async (t) => {
  const d = await dir(t);
  await writeFile(join(d, 'sweep.yaml'), VALID);
  const s = await loadSweep(join(d, 'sweep.yaml'), pipelineDefs);
  t.deepEqual(s.cells.map((c) => c.id), ['model=a,task=t,seed=1', 'model=a,task=t,seed=2', 'model=b,task=t,seed=1', 'model=b,task=t,seed=2']);
  t.is(s.cells[0].config.model.work, 2000); // schema default
  t.is(s.cells[0].config.stages.profile.top, 5);
  t.regex(String((s.cells[0].config.task.data as { sha256: string }).sha256), /^[0-9a-f]{64}$/);
});

test('zip, exclude and stage-setting axes', async (t) => {
  const d = await dir(t);
  const yaml = VALID.replace('axes:\n  model: [a, b]\n  seed: [1, 2]\n', 'axes:\n  model: [a, b]\n  seed: [1, 2]\n  stages.profile.top: [3, 4]\nzip: [[model, seed]]\nexclude:\n  - { model: b, stages.profile.top: 4 }\n');
  await writeFile(join(d, 'sweep.yaml'), yaml);
  const s = await loadSweep(join(d, 'sweep.yaml'), pipelineDefs);
  t.deepEqual(s.cells.map((c) => c.id), ['model=a,task=t,seed=1,profile.top=3', 'model=a,task=t,seed=1,profile.top=4', 'model=b,task=t,seed=2,profile.top=3']);
  t.is(s.cells[1].config.stages.profile.top, 4);
});

const cases: Array<{ name: string; yaml: string; line: number; field: string; message: RegExp }> = [
  { name: 'bad YAML', yaml: VALID.replace('axes:\n', 'axes:\n  model: [a, b\n'), line: 13, field: '(yaml)', message: /./ },
  { name: 'unknown top-level key', yaml: VALID + 'sedes: [1]\n', line: 14, field: 'sedes', message: /unknown key "sedes"; expected one of: sweep, pipeline/ },
  { name: 'unknown key in a model', yaml: VALID.replace('    transform: rot13', '    transfrom: rot13'), line: 7, field: 'models[1].transfrom', message: /unknown key "transfrom"; expected one of: id, transform, work/ },
  { name: 'wrong type', yaml: VALID.replace('    transform: upper', '    transform: upper\n    work: lots'), line: 6, field: 'models[0].work', message: /expected number, received string/ },
  { name: 'bad enum value', yaml: VALID.replace('transform: rot13', 'transform: rot14'), line: 7, field: 'models[1].transform', message: /expected one of "upper"\|"reverse"\|"rot13"/ },
  { name: 'empty axis', yaml: VALID.replace('  seed: [1, 2]', '  seed: []'), line: 13, field: 'axes.seed', message: /non-empty list/ },
  { name: 'duplicate id', yaml: VALID.replace('  - id: b', '  - id: a'), line: 6, field: 'models[1].id', message: /duplicate model id "a"/ },
  { name: 'dangling reference', yaml: VALID.replace('model: [a, b]', 'model: [a, c]'), line: 12, field: 'axes.model[1]', message: /"c" is not a model id; expected one of: a, b/ },
  { name: 'unknown pipeline', yaml: VALID.replace('pipeline: demo', 'pipeline: layerjf'), line: 2, field: 'pipeline', message: /expected one of the known pipelines: ndr, layerif, demo/ },
  { name: 'unknown stage setting', yaml: VALID + 'stages:\n  profile:\n    topk: 3\n', line: 16, field: 'stages.profile.topk', message: /unknown setting "topk"; expected one of: top/ },
  { name: 'unknown axis', yaml: VALID.replace('  seed: [1, 2]', '  seed: [1, 2]\n  lr: [0.1]'), line: 14, field: 'axes.lr', message: /unknown axis "lr"/ },
  { name: 'zip of unequal lengths', yaml: VALID.replace('  seed: [1, 2]', '  seed: [1, 2, 3]') + 'zip: [[model, seed]]\n', line: 14, field: 'zip[0]', message: /equal lengths; got model: 2, seed: 3/ },
  { name: 'exclusion matching nothing', yaml: VALID + 'exclude:\n  - { model: a, seed: 3 }\n', line: 15, field: 'exclude[0].seed', message: /3 is not a value of axis "seed"/ },
  { name: 'missing input file', yaml: VALID.replace('data: data.txt', 'data: missing.txt'), line: 10, field: 'tasks[0].data', message: /missing\.txt does not exist/ },
  { name: 'missing required key', yaml: VALID.replace('tasks:\n  - id: t\n    data: data.txt\n', 'tasks:\n  - id: t\n'), line: 9, field: 'tasks[0].data', message: /expected string, received undefined/ },
  { name: 'duplicate YAML key', yaml: VALID.replace('sweep: s\n', 'sweep: s\nsweep: t\n'), line: 2, field: '(yaml)', message: /unique/ },
  { name: 'non-integer seed', yaml: VALID.replace('seed: [1, 2]', 'seed: [1, 2.5]'), line: 13, field: 'axes.seed[1]', message: /integer seed/ },
];

for (const c of cases) {
  test(`invalid sweep: ${c.name} → file:line, field, expectation`, async (t) => {
    const { file, issues, message } = await issuesOf(t, c.yaml);
    const hit = issues.find((i) => i.field === c.field);
    t.truthy(hit, `expected an issue on ${c.field}; got:\n${message}`);
    t.is(hit!.file, file);
    t.is(hit!.line, c.line, message);
    t.true(hit!.col >= 1);
    t.regex(hit!.message, c.message);
    t.true(message.includes(`${file}:${c.line}:`));
  });
}

test('the CLI prints invalid sweeps as one clear message, exit code 2, no stack trace', async (t) => {
  const d = await dir(t);
  await mkdir(join(d, 'home'));
  const file = join(d, 'bad.yaml');
  await writeFile(file, VALID.replace('model: [a, b]', 'model: [a, zz]'));
  const main = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
  const r = spawnSync(process.execPath, ['--import', 'tsx', main, '--home', join(d, 'home'), 'plan', file], { encoding: 'utf8' });
  t.is(r.status, 2, r.stderr);
  t.regex(r.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:12:\\d+: axes\\.model\\[1\\]: "zz" is not a model id`));
  t.notRegex(r.stderr, /\n\s+at /);
});
