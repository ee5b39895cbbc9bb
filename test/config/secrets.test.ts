/**
 * Secrets in sweep files: the detector (src/config/secrets.ts) and parseSweep's refusal, located
 * at file:line:column and field, with only a redacted form of the secret in any message.
 */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findSecret, findSecretShapes, findSecretsInText, isSecretKey, scrubSecrets } from '../../src/config/secrets.ts';
import { parseSweep } from '../../src/config/sweep.ts';
import { SweepConfigError } from '../../src/config/errors.ts';
import { YamlSource } from '../../src/config/yaml-source.ts';
import type { PipelineDef } from '../../src/config/pipeline.ts';
import { builtinPipelines } from '../../pipelines/index.ts';

const defs: Record<string, PipelineDef> = Object.fromEntries(Object.entries(builtinPipelines).map(([k, v]) => [k, v.def]));
const CONFIGS = fileURLToPath(new URL('../../configs/', import.meta.url));

// Test values of the documented shapes (split so no scanner mistakes this file for a leak).
const SHAPED: Array<[string, string, string]> = [
  ['GitHub token', 'ghp_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8', 'ghp_***'],
  ['GitHub token', 'github_pat_' + '11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz', 'github_pat_***'],
  ['API key (OpenAI-style)', 'sk-' + 'Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12Wx34', 'sk-***'],
  ['API key (OpenAI-style)', 'sk-proj-' + 'Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78_-xyz', 'sk-proj-***'],
  ['Hugging Face token', 'hf_' + 'AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh', 'hf_***'],
  ['AWS access key id', 'AKIA' + 'IOSFODNN7EXAMPLE', 'AKIA***'],
  ['Slack token', 'xoxb-' + '123456789012-123456789012-abcdefghijkl', 'xoxb-***'],
  ['Slack token', 'xoxp-' + '123456789012-abcdefghijkl', 'xoxp-***'],
  ['JSON Web Token', 'eyJ' + 'hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXRlc3Q', 'eyJ***'],
  ['private key (PEM)', '-----BEGIN ' + 'RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----', '-----BEGIN PRIVATE KEY----- ***'],
  ['private key (PEM)', '-----BEGIN ' + 'OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA (no END line)', '-----BEGIN PRIVATE KEY----- ***'],
  ['password in a URL', 'https://' + 'alice:s3cr3t-pw@mlflow.example.org/', 'https://alice:***@'],
];

for (const [n, [kind, secret, redacted]] of SHAPED.entries()) {
  test(`shape ${n}: ${kind} ${redacted}`, (t) => {
    const f = findSecret('note', secret);
    t.truthy(f, secret);
    t.is(f!.kind, kind);
    t.is(f!.redacted, redacted);
    // Anywhere in a value (a header, a command line), and with no key at all.
    t.is(findSecret(undefined, `Authorization: Bearer ${secret} trailing`)?.kind, kind);
    t.is(scrubSecrets(`got "${secret}"`, [f!]), `got "${secret.replace(f!.match, redacted)}"`);
    t.false(scrubSecrets(secret, [f!]).includes(f!.match));
  });
}

test('not secrets: hashes, ids, prefixes without a body, the words themselves', (t) => {
  const notSecrets = [
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', // sha256
    'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'da39a3ee5e6b4b0d3255bfef95601890afd80709', // sha1 / git commit
    'smollm2-135m-instruct', 'spam-assassin', 'sports_understanding', 'logical_deduction/three_objects',
    'ghp_short', 'hf_model', 'sk-learn', 'task-abcdefghijklmnopqrstuvwxyzabcdefghijklmnop', 'sk-abcdefghijklmnopqrstuvwxyzabcdefghij', // no digits: a name
    'AKIA', 'xoxb-', 'eyJhbGciOi', 'password', 'token', '-----BEGIN PUBLIC KEY-----', 'https://example.org/a:b@c', 'http://127.0.0.1:5000',
    '${HF_TOKEN}', '+VE', 'TOP25', '5-5-5-5', 'q_proj', 'datainf',
  ];
  for (const v of notSecrets) t.is(findSecret('source', v), undefined, v);
  t.deepEqual(findSecretShapes(notSecrets.join('\n')), []);
});

test('secret key names', (t) => {
  for (const k of ['password', 'passwd', 'dbPassword', 'secret', 'clientSecret', 'client_secret', 'token', 'hfToken', 'HF_TOKEN', 'github-token',
    'api_key', 'apiKey', 'APIKey', 'apikey', 'access_key', 'accessKey', 'AWS_SECRET_ACCESS_KEY', 'private_key', 'privateKey', 'secret_key',
    'stages.finetune.token', 'credentials', 'passphrase'])
    t.true(isSecretKey(k), k);
  for (const k of ['id', 'source', 'name', 'path', 'sha256', 'key', 'monkey', 'keys', 'tokens', 'maxNewTokens', 'tokenizer', 'padToken', 'eos_token',
    'tokenLimit', 'secretary', 'passwordPolicyUrl', 'keyFrame', 'maxLength', 'aggregation', 'stages.data.noise'])
    t.false(isSecretKey(k), k);
});

test('literal values under secret keys; environment references and non-literals are fine', (t) => {
  t.is(findSecret('password', 'hunter2')?.redacted, '***');
  t.is(findSecret('api_key', 12345678)?.redacted, '***');
  t.regex(findSecret('token', 'abc')!.kind, /literal value of "token"/);
  for (const v of ['${HF_TOKEN}', '$HF_TOKEN', 'env:HF_TOKEN', '', '   ', true, false, null, undefined]) t.is(findSecret('hfToken', v), undefined, String(v));
  // A shape wins over the key rule (more specific redaction).
  t.is(findSecret('token', 'hf_' + 'AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh')?.redacted, 'hf_***');
});

test('raw text (YAML that does not parse): shapes and key: value literals', (t) => {
  const text = 'models: [\n  { id: m, password: "hunter22", apiKey: \'x1y2z3w4\' }\n  token: plain-text-token # c\n';
  const found = findSecretsInText(text).map((f) => [text.slice(f.index, f.index + f.match.length), f.redacted]);
  t.deepEqual(found, [['hunter22', '***'], ['x1y2z3w4', '***'], ['plain-text-token', '***']]);
});

test("the project's own configs hold no secrets", (t) => {
  const files = readdirSync(CONFIGS).filter((f) => f.endsWith('.yaml'));
  t.true(files.length >= 6);
  for (const f of files) {
    const text = readFileSync(join(CONFIGS, f), 'utf8');
    const src = new YamlSource(f, text);
    t.deepEqual(src.scalars().filter((s) => findSecret(s.isKey ? undefined : s.key, s.value)).map((s) => s.path.join('.')), [], f);
    t.deepEqual(findSecretsInText(text), [], f);
  }
});

const SWEEP = `sweep: secret-test
pipeline: ndr
models:
  - { id: m, source: smollm2-135m-instruct }
tasks:
  - { id: t, source: spam-assassin }
methods:
  - { id: datainf, influence: datainf }
axes:
  seed: [1]
`;

async function refuse(text: string): Promise<SweepConfigError> {
  const err = await parseSweep('/tmp/sweeps/s.yaml', text, defs).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof SweepConfigError)) throw new Error(`expected a SweepConfigError, got ${String(err)}`);
  return err;
}

test('parseSweep: the base sweep is valid', async (t) => {
  t.is((await parseSweep('/tmp/sweeps/s.yaml', SWEEP, defs)).cells.length, 1);
});

test('parseSweep refuses a token in a value: file:line:col, field, redacted, environment', async (t) => {
  const hf = SHAPED[4][1];
  const err = await refuse(SWEEP.replace('  - { id: m, source: smollm2-135m-instruct }', `  - id: m\n    source: smollm2-135m-instruct\n    hfToken: ${hf}`));
  const issue = err.issues.find((i) => /secret/.test(i.message))!;
  t.like(issue, { file: '/tmp/sweeps/s.yaml', line: 6, col: 14, field: 'models[0].hfToken' });
  t.regex(issue.message, /Hugging Face token: "hf_\*\*\*"/);
  t.regex(issue.message, /come from the environment/);
  t.regex(err.message, /\/tmp\/sweeps\/s\.yaml:6:14: models\[0\]\.hfToken: looks like a secret/);
  t.false(err.message.includes(hf));
  // The unknown key is reported too (naming the key, not the value).
  t.true(err.issues.some((i) => /unknown key "hfToken"/.test(i.message)));
});

test('parseSweep refuses a password literal, and a token used where an id goes is never echoed', async (t) => {
  const pw = await refuse(SWEEP + 'stages:\n  data:\n    password: correct-horse-battery\n');
  t.like(pw.issues.find((i) => /secret/.test(i.message)), { line: 13, col: 15, field: 'stages.data.password' });
  t.false(pw.message.includes('correct-horse-battery'));
  t.regex(pw.message, /literal value of "password": "\*\*\*"/);

  const gh = SHAPED[0][1];
  const axis = await refuse(SWEEP.replace('  seed: [1]', `  seed: [1]\n  model: [${gh}]`));
  t.false(axis.message.includes(gh), axis.message);
  t.true(axis.issues.some((i) => i.field === 'axes.model[0]' && /GitHub token/.test(i.message)));
  t.true(axis.issues.some((i) => /"ghp_\*\*\*" is not a model id/.test(i.message)));
});

test('parseSweep refuses secrets in comments, PEM blocks and YAML that does not parse', async (t) => {
  const aws = SHAPED[5][1];
  const comment = await refuse(SWEEP + `# key id ${aws}\n`);
  t.like(comment.issues[0], { line: 11, col: 10, field: '(comment)' });
  t.false(comment.message.includes(aws));

  const pem = await refuse(SWEEP + 'description: |\n  -----BEGIN ' + 'PRIVATE KEY-----\n  MIIEvQ\n  -----END PRIVATE KEY-----\n');
  t.like(pem.issues[0], { line: 11, field: 'description' });

  const jwt = SHAPED[8][1];
  const broken = await refuse(SWEEP + `tasks: [ { id: x, token: ${jwt} }\n`);
  t.true(broken.issues.some((i) => i.field === '(text)' && /JSON Web Token/.test(i.message)));
  t.true(broken.issues.some((i) => i.field === '(yaml)'));
  t.false(broken.message.includes(jwt), broken.message);
});

test('sha256 values and environment references pass', async (t) => {
  const text = SWEEP.replace('  - { id: t, source: spam-assassin }', '  - { id: t, source: spam-assassin }\n  - { id: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855, source: spam-assassin }');
  t.is((await parseSweep('/tmp/sweeps/s.yaml', text, defs)).cells.length, 2);
  // Not a secret, though still an unknown key: only that is reported.
  const err = await refuse(SWEEP + 'stages:\n  data:\n    token: ${HF_TOKEN}\n');
  t.deepEqual(err.issues.map((i) => i.field), ['stages.data.token']);
  t.regex(err.issues[0].message, /unknown setting "token"/);
});

test('a token used as a key is reported, and the field names it redacted', async (t) => {
  const gh = SHAPED[0][1];
  const err = await refuse(SWEEP + `${gh}: 1\n`);
  t.false(err.message.includes(gh), err.message);
  t.true(err.issues.some((i) => i.field === 'ghp_***' && i.line === 11 && i.col === 1 && /GitHub token/.test(i.message)));
});
