/**
 * Where etcd is and how to talk to it. Each setting comes from the config object (CNI conf, CLI
 * flags), else the environment, else the default, the order Calico's plugins use.
 */
import { InvalidInputError } from '../errors';

export interface EtcdSettings {
  readonly endpoints: readonly string[];
  readonly caCertFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  /** etcd's own authentication (besides, or instead of, client certificates). */
  readonly username?: string;
  readonly password?: string;
  /** Key prefix of the Calico layout; `/calico` in production, unique per test run in tests. */
  readonly prefix: string;
  /** Deadline of every single etcd call, in milliseconds. */
  readonly timeoutMs: number;
}

/** The keys as they appear in a CNI network config (and, upper-cased, in the environment). */
export interface EtcdConfigKeys {
  etcd_endpoints?: unknown;
  etcd_authority?: unknown;
  etcd_ca_cert_file?: unknown;
  etcd_cert_file?: unknown;
  etcd_key_file?: unknown;
  etcd_username?: unknown;
  etcd_password?: unknown;
  etcd_prefix?: unknown;
  etcd_timeout_ms?: unknown;
}

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:2379';
export const DEFAULT_PREFIX = '/calico';
export const DEFAULT_TIMEOUT_MS = 5000;

export function etcdSettingsFrom(config: EtcdConfigKeys = {}, env: NodeJS.ProcessEnv = process.env): EtcdSettings {
  const pick = (key: keyof EtcdConfigKeys): { field: string; value: string } | undefined => {
    const fromConfig = config[key];
    if (fromConfig !== undefined && fromConfig !== null && fromConfig !== '') {
      if (typeof fromConfig === 'number' && key === 'etcd_timeout_ms') return { field: key, value: String(fromConfig) };
      if (typeof fromConfig !== 'string') throw new InvalidInputError(key, `expected a string, got ${JSON.stringify(fromConfig)}`);
      return { field: key, value: fromConfig };
    }
    const envName = key.toUpperCase();
    const fromEnv = env[envName];
    return fromEnv ? { field: envName, value: fromEnv } : undefined;
  };

  // The config as a whole outranks the environment: a conf's etcd_authority beats ETCD_ENDPOINTS.
  const configured = (key: 'etcd_endpoints' | 'etcd_authority') => (config[key] !== undefined && config[key] !== '' ? pick(key) : undefined);
  const location = configured('etcd_endpoints') ?? configured('etcd_authority') ?? pick('etcd_endpoints') ?? pick('etcd_authority');
  let urls: string[];
  if (!location) urls = [DEFAULT_ENDPOINT];
  else if (location.field.toLowerCase() === 'etcd_endpoints') urls = location.value.split(',').map((u) => parseEndpoint(u.trim(), location.field));
  else urls = [parseEndpoint(`http://${location.value.trim()}`, location.field)];

  const caCertFile = pick('etcd_ca_cert_file')?.value;
  const certFile = pick('etcd_cert_file')?.value;
  const keyFile = pick('etcd_key_file')?.value;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new InvalidInputError('etcd_cert_file/etcd_key_file', 'a client certificate and its key must be given together');
  }

  const username = pick('etcd_username')?.value;
  const password = pick('etcd_password')?.value;
  if (password !== undefined && username === undefined) throw new InvalidInputError('etcd_username', 'a password needs the user it is for (etcd_username, ETCD_USERNAME)');

  const prefixSetting = pick('etcd_prefix');
  const prefix = prefixSetting?.value ?? DEFAULT_PREFIX;
  if (!/^\/[A-Za-z0-9_.\-/]*[A-Za-z0-9_.-]$/.test(prefix)) {
    throw new InvalidInputError(prefixSetting!.field, `"${prefix}" must start with "/" and not end with "/"`);
  }

  const timeoutSetting = pick('etcd_timeout_ms');
  const timeoutMs = timeoutSetting ? Number(timeoutSetting.value) : DEFAULT_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 50 || timeoutMs > 600_000) {
    throw new InvalidInputError(timeoutSetting!.field, `"${timeoutSetting!.value}" must be a whole number of milliseconds from 50 to 600000`);
  }

  return { endpoints: urls, caCertFile, certFile, keyFile, ...(username !== undefined ? { username, password } : {}), prefix, timeoutMs };
}

function parseEndpoint(text: string, field: string): string {
  // A local etcd's unix socket, as etcd's own clients accept it: unix:///path/to/socket.
  if (text.startsWith('unix://')) {
    if (!text.startsWith('unix:///') || /\s/.test(text)) throw new InvalidInputError(field, `"${text}" must be unix:// followed by an absolute path`);
    return text;
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidInputError(field, `"${text}" is not a URL (expected http://host:port, https://host:port or unix:///path)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidInputError(field, `"${text}" must use http:// or https://`);
  }
  if (!url.hostname) throw new InvalidInputError(field, `"${text}" has no host`);
  if (url.pathname !== '/' && url.pathname !== '') throw new InvalidInputError(field, `"${text}" must not have a path`);
  return `${url.protocol}//${url.hostname}:${url.port || '2379'}`;
}
