/**
 * Logs never print environment secrets: values of secret-named variables become `***` in
 * messages and metadata of the worker's logger (infra/worker.ts wraps its DefaultLogger).
 */
import test from 'ava';
import { DefaultLogger, LogTimestamp, type LogEntry } from '@temporalio/worker';
import { isSecretEnvName, redactDeep, redactSecrets, redactingLogger, secretEnvValues } from '../../src/runtime/redact.ts';

const TOKEN = 'fake-hf-token-0123456789';
const PASSWORD = 'fake mlflow pw!';
const ENV: NodeJS.ProcessEnv = {
  HF_TOKEN: TOKEN,
  MLFLOW_TRACKING_PASSWORD: PASSWORD,
  AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  AWS_REGION: 'eu-west-1x',
  OPENAI_API_KEY: 'short', // under 8 characters: left alone
  LAYERFLOW_HOME: '/home/user/.layerflow',
  PATH: '/usr/local/bin:/usr/bin',
  PWD: '/home/user/project',
};

test('secret variable names', (t) => {
  for (const n of ['HF_TOKEN', 'GITHUB_TOKEN', 'MLFLOW_TRACKING_TOKEN', 'MLFLOW_TRACKING_PASSWORD', 'DB_PASSWORD', 'CLIENT_SECRET', 'SECRET_KEY_BASE',
    'OPENAI_API_KEY', 'AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', 'AWS_SESSION_TOKEN', 'SSH_PRIVATE_KEY', 'GH_PAT', 'my_apikey', 'HUGGING_FACE_HUB_TOKEN'])
    t.true(isSecretEnvName(n), n);
  for (const n of ['PATH', 'HOME', 'PWD', 'OLDPWD', 'LAYERFLOW_HOME', 'LAYERFLOW_DEVICES', 'AWS_REGION', 'AWS_PROFILE', 'KEYBOARD', 'TOKENIZERS_PARALLELISM', 'MLFLOW_TRACKING_USERNAME', 'SSH_AUTH_SOCK'])
    t.false(isSecretEnvName(n), n);
});

test('values of secret variables are redacted, others and short ones are not', (t) => {
  t.deepEqual(secretEnvValues(ENV).sort(), [ENV.AWS_SECRET_ACCESS_KEY, PASSWORD, TOKEN].sort());
  const line = `curl -H "Authorization: Bearer ${TOKEN}" -u user:${PASSWORD} s3 ${ENV.AWS_SECRET_ACCESS_KEY} in ${ENV.LAYERFLOW_HOME} (${ENV.AWS_REGION}) short`;
  t.is(redactSecrets(line, ENV), `curl -H "Authorization: Bearer ***" -u user:*** s3 *** in /home/user/.layerflow (eu-west-1x) short`);
  t.is(redactSecrets(`${TOKEN}${TOKEN}`, ENV), '******');
  t.is(redactSecrets('nothing secret here', ENV), 'nothing secret here');
});

test('passwords in URLs are redacted whatever the environment', (t) => {
  t.is(redactSecrets('posting to https://bob:hunter2@mlflow.internal:5000/api', {}), 'posting to https://bob:***@mlflow.internal:5000/api');
  t.is(redactSecrets('http://127.0.0.1:5000/health', {}), 'http://127.0.0.1:5000/health');
});

test('metadata: nested objects, arrays, errors (message, stack, cause), cycles; the input is not mutated', (t) => {
  const err = new Error(`login failed with ${TOKEN}`, { cause: new Error(`pw ${PASSWORD}`) });
  const meta: Record<string, unknown> = { activity: 'finetune', args: ['--token', TOKEN], nested: { deep: { url: `x ${TOKEN}` } }, error: err, n: 3 };
  meta.self = meta;
  const out = redactDeep(meta, ENV) as Record<string, any>;
  const text = JSON.stringify({ ...out, self: undefined }) + out.error.message + out.error.stack + out.error.cause.message;
  t.false(text.includes(TOKEN));
  t.false(text.includes(PASSWORD));
  t.deepEqual(out.args, ['--token', '***']);
  t.is(out.nested.deep.url, 'x ***');
  t.true(out.error instanceof Error);
  t.is(out.error.message, 'login failed with ***');
  t.is(out.n, 3);
  t.is(out.self, out);
  t.true(err.message.includes(TOKEN), 'the original error is untouched');
});

test('the worker logger: a Temporal DefaultLogger wrapped by redactingLogger prints no secret', (t) => {
  process.env.LAYERFLOW_TEST_FAKE_TOKEN = 'fake-secret-for-the-logger-test';
  try {
    const entries: LogEntry[] = [];
    const logger = redactingLogger(new DefaultLogger('INFO', (e) => entries.push(e)));
    logger.info('connecting with fake-secret-for-the-logger-test', { header: 'Bearer fake-secret-for-the-logger-test' });
    logger.warn('no meta here: fake-secret-for-the-logger-test');
    logger.log('ERROR', 'boom', { error: new Error('fake-secret-for-the-logger-test rejected') });
    logger.debug('below the level: dropped fake-secret-for-the-logger-test');
    t.is(entries.length, 3);
    t.deepEqual(entries.map((e) => [e.level, e.message]), [['INFO', 'connecting with ***'], ['WARN', 'no meta here: ***'], ['ERROR', 'boom']]);
    t.is(entries[0].meta?.header, 'Bearer ***');
    t.is((entries[2].meta?.error as Error).message, '*** rejected');
    // Temporal's symbol-keyed metadata (the timestamp of a forwarded core log) passes through.
    logger.info('stamped', { [LogTimestamp]: 123n });
    t.is(entries[3].timestampNanos, 123n);
    t.false(JSON.stringify(entries, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).includes('fake-secret-for-the-logger-test'));
  } finally {
    delete process.env.LAYERFLOW_TEST_FAKE_TOKEN;
  }
});
