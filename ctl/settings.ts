/**
 * Where calicoctl finds etcd: flags, else the environment (ETCD_ENDPOINTS and friends, as the
 * plugins read it), else the config file (/etc/calico/calicoctl.cfg, Calico's CalicoAPIConfig),
 * else the local default.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { etcdSettingsFrom, type EtcdConfigKeys, type EtcdSettings } from '../shared/datastore/settings';
import { InvalidInputError, messageOf } from '../shared/errors';
import { CtlError } from './errors';

export const DEFAULT_CONFIG_FILE = '/etc/calico/calicoctl.cfg';

const FILE_KEYS: Record<string, keyof EtcdConfigKeys> = {
  etcdEndpoints: 'etcd_endpoints',
  etcdCACertFile: 'etcd_ca_cert_file',
  etcdCertFile: 'etcd_cert_file',
  etcdKeyFile: 'etcd_key_file',
  etcdUsername: 'etcd_username',
  etcdPassword: 'etcd_password',
};

function fromFile(path: string, required: boolean): EtcdConfigKeys {
  if (!existsSync(path)) {
    if (required) throw new CtlError(`config file ${path} does not exist`);
    return {};
  }
  let doc: unknown;
  try {
    doc = parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CtlError(`config file ${path} is not valid YAML: ${messageOf(err)}`);
  }
  const spec = (doc as { spec?: Record<string, unknown> } | null)?.spec;
  if (typeof spec !== 'object' || spec === null) throw new CtlError(`config file ${path} has no "spec" (expected kind CalicoAPIConfig with spec.etcdEndpoints)`);
  if (spec.datastoreType !== undefined && spec.datastoreType !== 'etcdv3') {
    throw new CtlError(`config file ${path}: spec.datastoreType "${String(spec.datastoreType)}" is not supported (only etcdv3)`);
  }
  const keys: EtcdConfigKeys = {};
  for (const [fileKey, key] of Object.entries(FILE_KEYS)) {
    const value = spec[fileKey];
    if (value === undefined) continue;
    if (typeof value !== 'string') throw new CtlError(`config file ${path}: spec.${fileKey} must be a string`);
    keys[key] = value;
  }
  return keys;
}

/** Where the etcd endpoints came from, for messages; undefined when nothing named them (the local default). */
export function endpointsSource(flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv): string | undefined {
  if (flags['etcd-endpoints']) return '--etcd-endpoints';
  if (env.ETCD_ENDPOINTS) return 'ETCD_ENDPOINTS';
  if (env.ETCD_AUTHORITY) return 'ETCD_AUTHORITY';
  const path = flags.config ?? DEFAULT_CONFIG_FILE;
  return fromFile(path, flags.config !== undefined).etcd_endpoints !== undefined ? `the config file ${path}` : undefined;
}

/** What calicoctl says when etcd does not answer, and where it was told to look (Calico's calicoctl names the same three ways). */
export function unreachableDatastore(message: string, source: string | undefined): string {
  if (source) return `${message} (the endpoints come from ${source})`;
  return `${message}
No datastore is configured, so calicoctl tried the local default. Point it at etcd in one of these ways:
  - the flags: --etcd-endpoints https://10.0.0.10:2379 (and --etcd-ca-cert-file, --etcd-cert-file, --etcd-key-file, or --etcd-username, --etcd-password)
  - the environment: ETCD_ENDPOINTS (and ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE, or ETCD_USERNAME, ETCD_PASSWORD)
  - a config file, ${DEFAULT_CONFIG_FILE} (or --config FILE):
      apiVersion: projectcalico.org/v3
      kind: CalicoAPIConfig
      spec:
        datastoreType: etcdv3
        etcdEndpoints: https://10.0.0.10:2379`;
}

export function ctlSettings(flags: Record<string, string | undefined>, env: NodeJS.ProcessEnv): EtcdSettings {
  const file = fromFile(flags.config ?? DEFAULT_CONFIG_FILE, flags.config !== undefined);
  const fromEnv = (name: keyof EtcdConfigKeys) => env[name.toUpperCase()];
  const pick = (key: keyof EtcdConfigKeys, flag: string) => flags[flag] ?? fromEnv(key) ?? (file[key] as string | undefined);
  try {
    return etcdSettingsFrom({
      etcd_endpoints: pick('etcd_endpoints', 'etcd-endpoints') ?? (env.ETCD_AUTHORITY ? `http://${env.ETCD_AUTHORITY}` : undefined),
      etcd_ca_cert_file: pick('etcd_ca_cert_file', 'etcd-ca-cert-file'),
      etcd_cert_file: pick('etcd_cert_file', 'etcd-cert-file'),
      etcd_key_file: pick('etcd_key_file', 'etcd-key-file'),
      etcd_username: pick('etcd_username', 'etcd-username'),
      etcd_password: pick('etcd_password', 'etcd-password'),
      etcd_prefix: flags['etcd-prefix'] ?? env.ETCD_PREFIX,
      etcd_timeout_ms: env.ETCD_TIMEOUT_MS,
    }, {});
  } catch (err) {
    if (err instanceof InvalidInputError) throw new CtlError(`${messageOf(err)} (from --${err.field.replace(/_/g, '-')}, ${err.field.toUpperCase()} or the config file)`);
    throw err;
  }
}
