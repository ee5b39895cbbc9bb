/**
 * Secrets in sweep files. A sweep is committed, copied into the run's records and shown in errors,
 * so a token or password written into it leaks; credentials come from the environment of the
 * process that needs them (HF_TOKEN, MLFLOW_TRACKING_PASSWORD, AWS_*, ...). This module only
 * recognises them (pure): `findSecret` on a key and its value, `findSecretShapes` on free text.
 * Every finding carries a redacted form safe to print; the secret itself is never echoed.
 */

export interface SecretFinding {
  /** What it looks like, e.g. "GitHub token", or "literal value of a secret key". */
  kind: string;
  /** Printable stand-in: the public prefix of the shape (if any) and `***`. */
  redacted: string;
  /** The matched text (to scrub it from other messages); never print it. */
  match: string;
  /** Offset of the match in the value. */
  index: number;
}

interface Shape {
  kind: string;
  re: RegExp;
  /** The printable part of a match (a well-known public prefix). */
  prefix: (m: RegExpExecArray) => string;
  /** Extra check on a match (e.g. it must mix letters and digits). */
  accept?: (m: RegExpExecArray) => boolean;
}

const mixed = (s: string) => /[0-9]/.test(s) && /[A-Za-z]/.test(s);

/** Well-known credential shapes. Each needs a distinctive prefix, so hashes (hex) and ids never match. */
const SHAPES: Shape[] = [
  // The whole block (to its END line, or to the end of the text): the body is the secret.
  {
    kind: 'private key (PEM)',
    re: /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[\s\S]*)/g,
    prefix: () => '-----BEGIN PRIVATE KEY----- ',
  },
  { kind: 'GitHub token', re: /(?<![A-Za-z0-9_])(gh[pousr]_)[A-Za-z0-9]{30,}/g, prefix: (m) => m[1] },
  { kind: 'GitHub token', re: /(?<![A-Za-z0-9_])(github_pat_)[A-Za-z0-9_]{30,}/g, prefix: (m) => m[1] },
  { kind: 'Hugging Face token', re: /(?<![A-Za-z0-9_])(hf_)[A-Za-z0-9]{30,}/g, prefix: (m) => m[1] },
  {
    kind: 'API key (OpenAI-style)',
    re: /(?<![A-Za-z0-9_-])(sk-(?:proj-|svcacct-|admin-|ant-(?:api\d\d-)?)?)([A-Za-z0-9_-]{32,})/g,
    prefix: (m) => m[1],
    accept: (m) => mixed(m[2]),
  },
  { kind: 'Stripe key', re: /(?<![A-Za-z0-9_])((?:sk|rk|pk)_live_)[A-Za-z0-9]{16,}/g, prefix: (m) => m[1] },
  { kind: 'AWS access key id', re: /(?<![A-Z0-9])(AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])/g, prefix: (m) => m[1] },
  { kind: 'Google API key', re: /(?<![A-Za-z0-9_-])(AIza)[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])/g, prefix: (m) => m[1] },
  { kind: 'Slack token', re: /(?<![A-Za-z0-9])(xox[abposr]-)[A-Za-z0-9-]{10,}/g, prefix: (m) => m[1] },
  { kind: 'JSON Web Token', re: /(?<![A-Za-z0-9_-])(eyJ)[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, prefix: (m) => m[1] },
  {
    kind: 'password in a URL',
    re: /\b([a-z][a-z0-9+.-]*:\/\/[^\s/:@]+:)[^\s/@]+@/gi,
    prefix: (m) => m[1],
  },
];

/** Credential shapes anywhere in `text`, in order of appearance (overlaps dropped). */
export function findSecretShapes(text: string): SecretFinding[] {
  const out: SecretFinding[] = [];
  for (const s of SHAPES) {
    s.re.lastIndex = 0;
    for (let m = s.re.exec(text); m; m = s.re.exec(text)) {
      if (s.accept && !s.accept(m)) continue;
      const end = m.index + m[0].length;
      if (out.some((o) => m!.index < o.index + o.match.length && o.index < end)) continue;
      out.push({ kind: s.kind, redacted: `${s.prefix(m)}***${s.kind === 'password in a URL' ? '@' : ''}`, match: m[0], index: m.index });
    }
  }
  return out.sort((a, b) => a.index - b.index);
}

/** Last words of a key name that make its value a secret. */
const SECRET_WORDS = new Set(['password', 'passwd', 'passphrase', 'secret', 'secrets', 'token', 'credential', 'credentials', 'apikey', 'accesskey', 'privatekey', 'secretkey']);
/** Two-word endings (`api_key`, `accessKey`, `client-secret`, ...). */
const SECRET_PAIRS = new Set(['apikey', 'accesskey', 'privatekey', 'secretkey', 'signingkey', 'encryptionkey', 'masterkey', 'sshkey']);
/** `<word>Token` names that are tokenizer vocabulary, not credentials (padToken, eosToken, ...). */
const VOCAB_TOKENS = new Set(['pad', 'bos', 'eos', 'unk', 'sep', 'cls', 'mask', 'special', 'start', 'end', 'stop', 'max', 'min', 'num', 'first', 'last', 'new']);

function words(key: string): string[] {
  return key
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}

/** Does a key name say its value is a secret? (`password`, `hfToken`, `api_key`, `AWS_SECRET_ACCESS_KEY`, `stages.x.token`, ...) */
export function isSecretKey(key: string): boolean {
  const w = words(key);
  if (!w.length) return false;
  const last = w[w.length - 1];
  const prev = w.length > 1 ? w[w.length - 2] : '';
  if (last === 'token' && VOCAB_TOKENS.has(prev)) return false;
  return SECRET_WORDS.has(last) || SECRET_PAIRS.has(prev + last);
}

/** A reference to an environment variable (`$HF_TOKEN`, `${HF_TOKEN}`, `env:HF_TOKEN`), not a secret. */
const ENV_REF = /^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|env:[A-Za-z_][A-Za-z0-9_]*)$/;

/**
 * The secret in a scalar, if any: a well-known credential shape in the value (or key), or any
 * literal value (string or number) under a key whose name says it is a secret.
 */
export function findSecret(key: string | undefined, value: unknown): SecretFinding | undefined {
  if (typeof value === 'string') {
    const shaped = findSecretShapes(value)[0];
    if (shaped) return shaped;
  }
  if (key === undefined || !isSecretKey(key)) return undefined;
  const literal = typeof value === 'string' ? value.trim() : typeof value === 'number' || typeof value === 'bigint' ? String(value) : '';
  if (!literal || ENV_REF.test(literal)) return undefined;
  return { kind: `literal value of "${key}"`, redacted: '***', match: typeof value === 'string' ? value : String(value), index: 0 };
}

/**
 * Secrets in raw text that may not parse as YAML (the positions are offsets in `text`): credential
 * shapes anywhere, and literal values after a secret key (`password: x`, `{ api_key: "x" }`).
 */
export function findSecretsInText(text: string): SecretFinding[] {
  const out = findSecretShapes(text);
  const re = /(?:^|[\s{,[-])["']?([A-Za-z_][A-Za-z0-9_.-]*)["']?[ \t]*:[ \t]+(?:"([^"\n]*)"|'([^'\n]*)'|([^\s,}\]#][^,}\]\n#]*))/gm;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const value = (m[2] ?? m[3] ?? m[4] ?? '').trim();
    const index = m.index + m[0].lastIndexOf(value);
    if (out.some((o) => index < o.index + o.match.length && o.index < index + value.length)) continue;
    const f = findSecret(m[1], value);
    if (f) out.push({ ...f, index });
  }
  return out.sort((a, b) => a.index - b.index);
}

/** Replace every occurrence of the matched secrets in `text` with their redacted forms. */
export function scrubSecrets(text: string, found: SecretFinding[]): string {
  let out = text;
  for (const f of [...found].sort((a, b) => b.match.length - a.match.length)) if (f.match.length >= 4) out = out.split(f.match).join(f.redacted);
  return out;
}

/** The message of a sweep issue for a secret. */
export function secretMessage(f: SecretFinding): string {
  return (
    `looks like a secret (${f.kind}: "${f.redacted}"); secrets are not written in sweep files: ` +
    'they come from the environment of the process that needs them (e.g. HF_TOKEN, MLFLOW_TRACKING_PASSWORD, AWS_*); remove it and set it there'
  );
}
