/**
 * Keep environment secrets out of logs. Credentials reach LayerFlow through the environment
 * (HF_TOKEN, MLFLOW_TRACKING_PASSWORD, AWS_SECRET_ACCESS_KEY, ...); a log line that quotes a
 * command line, a URL or an error from a client library could carry one. `redactSecrets` replaces
 * the values of secret-named environment variables (and the password of any `scheme://user:pw@`
 * URL) with `***`; `redactingLogger` wraps a Temporal-style logger so messages and metadata pass
 * through it. Pure apart from reading `process.env` (or the env given).
 */

export const REDACTED = '***';

/** Values shorter than this are not redacted (replacing "1" or "true" everywhere helps nobody). */
export const MIN_SECRET_LENGTH = 8;

/** Words of a variable name that make its value secret wherever they appear (HF_TOKEN, MLFLOW_TRACKING_PASSWORD, SECRET_KEY_BASE). */
const SECRET_WORDS = new Set(['TOKEN', 'SECRET', 'SECRETS', 'PASSWORD', 'PASSWD', 'PASSPHRASE', 'APIKEY', 'CREDENTIAL', 'CREDENTIALS', 'PAT']);
/** Last words that make it secret (OPENAI_API_KEY, AWS_SECRET_ACCESS_KEY, SSH_PRIVATE_KEY). */
const SECRET_LAST = new Set(['KEY', 'AUTH', 'PWD']);
/** AWS_* is secret except these settings. */
const AWS_PUBLIC = new Set(['AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_PROFILE', 'AWS_DEFAULT_OUTPUT', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_ENDPOINT_URL', 'AWS_PAGER']);

/** Does an environment variable's name say its value is a secret? */
export function isSecretEnvName(name: string): boolean {
  const upper = name.toUpperCase();
  if (upper === 'PWD' || upper === 'OLDPWD') return false; // the shell's working directory
  if (upper.startsWith('AWS_')) return !AWS_PUBLIC.has(upper);
  const words = upper.split(/[^A-Z0-9]+/).filter(Boolean);
  if (!words.length) return false;
  return words.some((w) => SECRET_WORDS.has(w)) || SECRET_LAST.has(words[words.length - 1]) || upper.endsWith('APIKEY');
}

/** The values to redact: of secret-named variables, at least MIN_SECRET_LENGTH long, longest first. */
export function secretEnvValues(env: NodeJS.ProcessEnv = process.env): string[] {
  const out = new Set<string>();
  for (const [name, value] of Object.entries(env)) {
    if (!value || value.length < MIN_SECRET_LENGTH || !isSecretEnvName(name)) continue;
    out.add(value);
    const trimmed = value.trim();
    if (trimmed !== value && trimmed.length >= MIN_SECRET_LENGTH) out.add(trimmed);
  }
  return [...out].sort((a, b) => b.length - a.length);
}

const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/:@]+:)[^\s/@]+@/gi;

/** `text` with every secret environment value (and URL password) replaced by `***`. */
export function redactSecrets(text: string, env: NodeJS.ProcessEnv = process.env, values = secretEnvValues(env)): string {
  let out = text;
  for (const v of values) if (out.includes(v)) out = out.split(v).join(REDACTED);
  return out.replace(URL_PASSWORD, `$1${REDACTED}@`);
}

/**
 * A copy of `value` with every string redacted: plain objects, arrays and errors (message, stack,
 * own fields) are copied; other objects (buffers, class instances) are passed as they are.
 */
export function redactDeep(value: unknown, env: NodeJS.ProcessEnv = process.env, values = secretEnvValues(env)): unknown {
  const seen = new Map<object, unknown>();
  const walk = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') return redactSecrets(v, env, values);
    if (v === null || typeof v !== 'object' || depth > 8) return v;
    if (seen.has(v)) return seen.get(v);
    if (Array.isArray(v)) {
      const out: unknown[] = [];
      seen.set(v, out);
      for (const x of v) out.push(walk(x, depth + 1));
      return out;
    }
    const proto = Object.getPrototypeOf(v) as object | null;
    const isError = v instanceof Error;
    if (!isError && proto !== Object.prototype && proto !== null) return v;
    const out = Object.create(proto) as Record<string | symbol, unknown>;
    seen.set(v, out);
    if (isError) {
      for (const k of ['name', 'message', 'stack'] as const)
        if (typeof v[k] === 'string') Object.defineProperty(out, k, { value: walk(v[k], depth + 1), writable: true, configurable: true, enumerable: false });
      if ('cause' in v) Object.defineProperty(out, 'cause', { value: walk(v.cause, depth + 1), writable: true, configurable: true, enumerable: false });
    }
    for (const k of Reflect.ownKeys(v)) {
      const d = Object.getOwnPropertyDescriptor(v, k);
      if (!d?.enumerable) continue;
      out[k] = walk((v as Record<string | symbol, unknown>)[k], depth + 1);
    }
    return out;
  };
  return walk(value, 0);
}

type Level = 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
/** The shape of Temporal's `Logger` (@temporalio/common), kept structural so this module needs no SDK. */
export interface LoggerLike {
  log(level: Level, message: string, meta?: Record<string | symbol, unknown>): unknown;
  trace(message: string, meta?: Record<string | symbol, unknown>): unknown;
  debug(message: string, meta?: Record<string | symbol, unknown>): unknown;
  info(message: string, meta?: Record<string | symbol, unknown>): unknown;
  warn(message: string, meta?: Record<string | symbol, unknown>): unknown;
  error(message: string, meta?: Record<string | symbol, unknown>): unknown;
}

/** A logger that redacts environment secrets from every message and its metadata, then logs to `inner`. */
export function redactingLogger(inner: LoggerLike, env: NodeJS.ProcessEnv = process.env): LoggerLike {
  const log = (level: Level, message: string, meta?: Record<string | symbol, unknown>) => {
    const values = secretEnvValues(env);
    const m = redactSecrets(String(message), env, values);
    return meta === undefined ? inner.log(level, m) : inner.log(level, m, redactDeep(meta, env, values) as Record<string | symbol, unknown>);
  };
  return {
    log,
    trace: (message, meta) => log('TRACE', message, meta),
    debug: (message, meta) => log('DEBUG', message, meta),
    info: (message, meta) => log('INFO', message, meta),
    warn: (message, meta) => log('WARN', message, meta),
    error: (message, meta) => log('ERROR', message, meta),
  };
}
