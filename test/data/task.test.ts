import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DataError, MissingArtifactError } from '../../src/errors.ts';
import { parseTaskJsonl } from '../../src/data/jsonl.ts';
import { loadClassificationTask, parseTaskEntry, TaskEntry, TaskEntryFields } from '../../src/data/task.ts';

const fixtures = new URL('../fixtures/science/', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'layerflow-task-'));
const write = (name: string, lines: string[]) => {
  const path = join(dir, name);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
};
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test('TaskEntry schema: both sources, strict, errors name the field', (t) => {
  t.deepEqual(parseTaskEntry({ source: 'spam-assassin' }), { source: 'spam-assassin' });
  t.deepEqual(parseTaskEntry({ source: 'jsonl', path: 'a.jsonl', textField: 'sentence' }), { source: 'jsonl', path: 'a.jsonl', textField: 'sentence' });
  t.true(TaskEntry.safeParse({ source: 'spam-assassin', groups: ['spam-1'], stripHeaders: false }).success);
  t.throws(() => parseTaskEntry({ source: 'hf', path: 'x' }), { instanceOf: ConfigError, message: /task\.source: .*'spam-assassin' \| 'jsonl'/ });
  t.throws(() => parseTaskEntry({ source: 'jsonl' }), { instanceOf: ConfigError, message: /task\.path: / });
  t.throws(() => parseTaskEntry({ source: 'jsonl', path: 'a', textFeild: 'x' }), { instanceOf: ConfigError, message: /textFeild/ });
  t.throws(() => parseTaskEntry({ source: 'jsonl', path: 'a', labelField: '' }), { instanceOf: ConfigError, message: /task\.labelField: expected a non-empty field name/ });
  t.throws(() => parseTaskEntry({ source: 'spam-assassin', groups: ['spam-3'] }, 'tasks[2]'), { instanceOf: ConfigError, message: /tasks\[2\]\.groups\.0: .*spam-2/ });
  t.throws(() => parseTaskEntry({ source: 'spam-assassin', path: 'x' }), { instanceOf: ConfigError, message: /Unrecognized key: "path"/ });
});

test('spam-assassin entries load the installed corpus', (t) => {
  const ds = loadClassificationTask({ source: 'spam-assassin', groups: ['hard-ham-1', 'spam-1'] });
  t.is(ds.kind, 'classification');
  t.is(ds.name, 'spam-assassin');
  t.is(ds.examples.length, 250 + 500);
  t.is(ds.examples.filter((e) => e.label === 1).length, 500);
  t.deepEqual(ds.labelNames, ['ham', 'spam']);
  const raw = loadClassificationTask({ source: 'spam-assassin', groups: ['hard-ham-1'], stripHeaders: false });
  t.true(raw.examples[0].text.includes('Received:'));
  t.throws(() => loadClassificationTask({ source: 'spam-assassin', groups: ['nope'] } as unknown as TaskEntry), { instanceOf: ConfigError, message: /groups\.0/ });
});

test('jsonl entries: default fields, relative paths against baseDir', (t) => {
  const ds = loadClassificationTask({ source: 'jsonl', path: 'tiny-classification.jsonl' }, fixtures);
  t.is(ds.name, 'tiny-classification.jsonl');
  t.is(ds.numClasses, 2);
  t.deepEqual(ds.labelNames, ['ham', 'spam']);
  t.deepEqual(ds.examples.map((e) => [e.text, e.label]), [['free money now', 1], ['meeting at 3', 0], ['win a prize', 1]]);
  const abs = loadClassificationTask({ source: 'jsonl', path: join(fixtures, 'tiny-classification.jsonl') }, '/elsewhere');
  t.deepEqual(abs.examples, ds.examples);
});

test('jsonl entries: custom text and label fields', (t) => {
  const path = write('custom.jsonl', ['{"sentence": "good film", "y": 1, "text": "ignored"}', '{"sentence": "bad film", "y": 0}', '', '{"sentence": "fine", "y": 1}']);
  const ds = loadClassificationTask({ source: 'jsonl', path, textField: 'sentence', labelField: 'y' });
  t.deepEqual(ds.examples, [{ id: 0, text: 'good film', label: 1 }, { id: 1, text: 'bad film', label: 0 }, { id: 2, text: 'fine', label: 1 }]);
  t.is(ds.numClasses, 2);
  // Same rows read with the default fields: line 1 has "text" but no "label".
  t.throws(() => loadClassificationTask({ source: 'jsonl', path }), { instanceOf: DataError, message: /custom\.jsonl:1: field "label" is undefined/ });
  const two = write('two.jsonl', ['{"text": "a", "label": 0}', '{"sentence": "b", "label": 1}']);
  t.throws(() => loadClassificationTask({ source: 'jsonl', path: two }), { instanceOf: DataError, message: /two\.jsonl:2: fields sentence, label; expected a classification row with fields text\/label/ });
});

test('jsonl entries: a bad line reports file:line and the field', (t) => {
  const path = write('bad.jsonl', ['{"sentence": "a", "y": 0}', '{"sentence": "b", "y": 1}', '{"sentence": "c", "y": -1}', '{"sentence": "d", "y": 0}']);
  const err = t.throws(() => loadClassificationTask({ source: 'jsonl', path, textField: 'sentence', labelField: 'y' }), { instanceOf: DataError });
  t.true(err.message.includes(':3:'));
  t.is(err.message, `${path}:3: field "y" is -1; expected an integer ≥ 0 or a non-empty string`);
  const noText = write('notext.jsonl', ['{"sentence": "a", "y": 0}', '{"sentence": "b", "y": 1}', '{"sentence": 7, "y": 0}']);
  t.throws(() => loadClassificationTask({ source: 'jsonl', path: noText, textField: 'sentence', labelField: 'y' }), { instanceOf: DataError, message: /notext\.jsonl:3: field "sentence" must be a string/ });
  const notJson = write('notjson.jsonl', ['{"text": "a", "label": 0}', '{"text": "b", "label": 1}', '{"text": "c", "label": 1']);
  t.throws(() => loadClassificationTask({ source: 'jsonl', path: notJson }), { instanceOf: DataError, message: /notjson\.jsonl:3: not valid JSON/ });
  const mixed = write('mixed.jsonl', ['{"text": "a", "label": 0}', '{"text": "b", "label": 1}', '{"text": "c", "label": "spam"}']);
  t.throws(() => loadClassificationTask({ source: 'jsonl', path: mixed }), { instanceOf: DataError, message: /mixed\.jsonl:3: field "label" has type string, unlike line 1/ });
});

test('a multiple-choice JSONL as a classification task: DataError saying what was expected', (t) => {
  t.throws(() => loadClassificationTask({ source: 'jsonl', path: 'tiny-choice.jsonl' }, fixtures), {
    instanceOf: DataError,
    message: /tiny-choice\.jsonl:1: a multiple-choice row \(prompt\/choices\/answer\); expected a classification row with fields text\/label/,
  });
  const later = write('later-choice.jsonl', ['{"review": "ok", "stars": "3"}', '{"prompt": "p", "choices": ["a", "b"], "answer": 0}']);
  t.throws(() => loadClassificationTask({ source: 'jsonl', path: later, textField: 'review', labelField: 'stars' }), {
    instanceOf: DataError,
    message: /later-choice\.jsonl:2: a multiple-choice row \(prompt\/choices\/answer\); expected a classification row with fields review\/stars/,
  });
  // parseTaskJsonl without `expect` still reads either kind; with expect: 'choice' the converse error.
  t.is(parseTaskJsonl('{"prompt": "p", "choices": ["a", "b"], "answer": 0}', 'c.jsonl').kind, 'choice');
  t.throws(() => parseTaskJsonl('{"text": "t", "label": 0}', 'c.jsonl', 'c', { expect: 'choice' }), { instanceOf: DataError, message: /^c\.jsonl:1: a classification row \(text\/label\); expected a multiple-choice row/ });
});

test('sweep task entries: the id is ignored, the flat field schema fits a pipeline', (t) => {
  const ds = loadClassificationTask({ id: 'tiny', source: 'jsonl', path: 'tiny-classification.jsonl' }, fixtures);
  t.is(ds.examples.length, 3);
  t.throws(() => loadClassificationTask({ id: 'sms', source: 'jsonl' }), { instanceOf: ConfigError, message: /task "sms"\.path: / });
  // The flat schema accepts both sources' fields; which go together is checked when loading.
  const flat = TaskEntryFields.parse({ source: 'spam-assassin', path: 'x.jsonl' });
  t.throws(() => loadClassificationTask(flat), { instanceOf: ConfigError, message: /Unrecognized key: "path"/ });
  t.false(TaskEntryFields.safeParse({ source: 'csv' }).success);
});

test('a missing file: MissingArtifactError naming the path', (t) => {
  t.throws(() => loadClassificationTask({ source: 'jsonl', path: 'no/such/file.jsonl' }, '/tmp/layerflow-none'), {
    instanceOf: MissingArtifactError,
    message: /\/tmp\/layerflow-none\/no\/such\/file\.jsonl/,
  });
});
