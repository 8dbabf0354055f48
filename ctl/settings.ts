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
