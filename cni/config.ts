/**
 * The network configuration on stdin, parsed once into one typed object. Unknown keys are kept
 * (delegates get the whole config) and otherwise ignored, as CNI plugins do.
 */
import { etcdSettingsFrom, type EtcdSettings } from '../shared/datastore/settings';
import { NAME_PART } from '../shared/endpoints/identity';
import { sanitiseLabels } from '../shared/endpoints/labels';
import { InvalidInputError, messageOf } from '../shared/errors';
import { parseBoundedJson } from '../shared/json';
import { NODENAME_FILE, defaultNodename } from '../shared/nodename';
import { parseAddress, parseCidr, type IpAddress } from '../shared/net';
import { validateMtu } from '../shared/dataplane/names';
import { DEFAULT_MTU_FILE, workloadMtu } from '../shared/routing/workload-mtu';
import { CniCode, CniError } from './errors';
import type { CniEnv } from './env';
import { parseVersion, type CniVersion } from './version';

export type JsonObject = Record<string, unknown>;
export type LogLevel = 'debug' | 'info' | 'warning' | 'error';

export interface IpamConf {
  readonly type: string;
  readonly assignIpv4: boolean;
  readonly assignIpv6: boolean;
  readonly ipv4Pools: readonly string[];
  readonly ipv6Pools: readonly string[];
}

export interface NetConf {
  readonly cniVersion: CniVersion;
  readonly name: string;
  readonly type: string;
  /** The config exactly as received, for IPAM delegates. */
  readonly raw: JsonObject;
  readonly etcd: EtcdSettings;
  readonly nodename: string;
  readonly mtu: number;
  readonly logLevel: LogLevel;
  readonly logFile: string | undefined;
  readonly ipam: IpamConf;
  /** Specific addresses asked for (runtimeConfig.ips, args.cni.ips, CNI_ARGS IP, Mesos labels). */
  readonly requestedIps: readonly IpAddress[];
  /** Orchestrator labels for the workload endpoint (Mesos network_info labels), sanitised. */
  readonly labels: Readonly<Record<string, string>>;
  /** Orchestrator labels dropped because their key is reserved (network membership, Calico's own). */
  readonly refusedLabels: readonly string[];
  /** Mesos NetworkInfo groups: profiles the endpoint has besides its network's. */
  readonly groups: readonly string[];
  readonly prevResult: JsonObject | undefined;
  /**
   * `no_policy`: this host enforces no policy (its daemon runs with --no-policy, or there is none).
   * Otherwise a plugin that runs without the daemon makes sure the policy table's fixed part
   * exists before it wires a veth, so that no workload is ever open.
   */
  readonly noPolicy: boolean;
  readonly validAttachments: readonly { containerID: string; ifname: string }[] | undefined;
}

export const DEFAULT_LOG_FILE = '/var/log/calico/cni/cni.log';
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

function invalid(field: string, reason: string): CniError {
  return new CniError(CniCode.InvalidConfig, `invalid network config: ${field} ${reason}`);
}

/** A shared check run on the config: what it refuses (an InvalidInputError) is said as a config error naming the key. */
function configField<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof InvalidInputError) throw invalid(`"${err.field}"`, messageOf(err).replace(/^invalid [^:]+: /, ''));
    throw err;
  }
}

/** Parses stdin just enough to learn the version (VERSION, and errors before full parsing). */
export function parseJson(stdin: string): JsonObject {
  let value: unknown;
  try {
    value = parseBoundedJson(stdin, 'stdin');
  } catch (err) {
    throw new CniError(CniCode.DecodeFailure, `cannot decode the network config on stdin: ${messageOf(err)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new CniError(CniCode.DecodeFailure, 'cannot decode the network config on stdin: expected a JSON object');
  }
  return value as JsonObject;
}

export function parseConfig(raw: JsonObject, env: CniEnv | undefined, processEnv: NodeJS.ProcessEnv): NetConf {
  const cniVersion = parseVersion(raw.cniVersion);
  const name = raw.name;
  if (typeof name !== 'string' || !NETWORK_NAME.test(name)) {
    throw invalid('"name"', `${JSON.stringify(name)} must be a network name (letters, digits, _ . -, starting with a letter or digit)`);
  }
  const type = stringField(raw, 'type') ?? 'calico';
  const datastoreType = stringField(raw, 'datastore_type');
  if (datastoreType !== undefined && datastoreType !== 'etcdv3') throw invalid('"datastore_type"', `"${datastoreType}" is not supported (only etcdv3)`);

  const etcd = configField(() => etcdSettingsFrom(raw, processEnv));
  // No "mtu": the one the node daemon worked out for this host's tunnels (shared/routing/workload-mtu.ts).
  const mtu = configField(() => validateMtu(raw.mtu ?? workloadMtu(stringField(raw, 'mtu_file') ?? DEFAULT_MTU_FILE)));

  const mesos = mesosNetworkInfo(raw);
  const mesosLabels = mesos ? mesosLabelPairs(mesos) : [];
  const labels = sanitiseLabels(mesosLabels.filter(([k]) => k !== 'ipv4_addrs' && k !== 'ipv6_addrs'));
  return {
    cniVersion,
    name,
    type,
    raw,
    etcd,
    nodename: nodenameOf(raw),
    mtu,
    logLevel: logLevelOf(raw.log_level),
    logFile: raw.log_file_path === '' ? undefined : (stringField(raw, 'log_file_path') ?? DEFAULT_LOG_FILE),
    ipam: ipamOf(raw.ipam),
    requestedIps: requestedIps(raw, env, mesosLabels),
    labels: labels.labels,
    refusedLabels: labels.refused,
    groups: mesosGroups(mesos),
    prevResult: objectField(raw, 'prevResult'),
    noPolicy: booleanField(raw, 'no_policy') ?? false,
    validAttachments: attachmentsOf(raw),
  };
}

function stringField(raw: JsonObject, field: string): string | undefined {
  const value = raw[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(`"${field}"`, `must be a string, got ${JSON.stringify(value)}`);
  return value;
}

function booleanField(raw: JsonObject, field: string): boolean | undefined {
  const value = raw[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw invalid(`"${field}"`, `must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

function objectField(raw: JsonObject, field: string): JsonObject | undefined {
  const value = raw[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid(`"${field}"`, 'must be an object');
  return value as JsonObject;
}

function nodenameOf(raw: JsonObject): string {
  const configured = stringField(raw, 'nodename') ?? stringField(raw, 'hostname');
  if (configured) return configured;
  return defaultNodename(stringField(raw, 'nodename_file') ?? NODENAME_FILE);
}

function logLevelOf(value: unknown): LogLevel {
  if (value === undefined || value === null || value === '') return 'info';
  const level = typeof value === 'string' ? value.toLowerCase() : '';
  if (level === 'warn') return 'warning';
  if (level === 'debug' || level === 'info' || level === 'warning' || level === 'error') return level;
  throw invalid('"log_level"', `${JSON.stringify(value)} must be one of debug, info, warning, error`);
}

/** Calico writes assign_ipv4 as the string "true"; booleans are accepted too. */
function flag(ipam: JsonObject, field: string, fallback: boolean): boolean {
  const value = ipam[field];
  if (value === undefined || value === null || value === '') return fallback;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw invalid(`"ipam.${field}"`, `${JSON.stringify(value)} must be "true" or "false"`);
}

function pools(ipam: JsonObject, field: string, version: 4 | 6): string[] {
  const value = ipam[field];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((p) => typeof p !== 'string')) throw invalid(`"ipam.${field}"`, 'must be a list of pool names or CIDRs');
  for (const pool of value as string[]) {
    if (!pool.includes('/')) continue;
    try {
      if (parseCidr(pool, `ipam.${field}`).version !== version) throw new InvalidInputError(`ipam.${field}`, `"${pool}" is not an IPv${version} pool`);
    } catch (err) {
      throw invalid(`"ipam.${field}"`, messageOf(err).replace(/^invalid [^:]+: /, ''));
    }
  }
  return value as string[];
}

function ipamOf(value: unknown): IpamConf {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('"ipam"', 'is required: an object with a "type"');
  const ipam = value as JsonObject;
  if (typeof ipam.type !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(ipam.type)) throw invalid('"ipam.type"', `${JSON.stringify(ipam.type)} must name an IPAM plugin`);
  const assignIpv4 = flag(ipam, 'assign_ipv4', true);
  const assignIpv6 = flag(ipam, 'assign_ipv6', false);
  if (!assignIpv4 && !assignIpv6) throw invalid('"ipam"', 'assigns no address: assign_ipv4 and assign_ipv6 are both false');
  return { type: ipam.type, assignIpv4, assignIpv6, ipv4Pools: pools(ipam, 'ipv4_pools', 4), ipv6Pools: pools(ipam, 'ipv6_pools', 6) };
}

interface MesosNetworkInfo {
  labels?: { labels?: { key?: unknown; value?: unknown }[] };
  groups?: unknown;
}

function mesosNetworkInfo(raw: JsonObject): MesosNetworkInfo | undefined {
  const args = raw.args as JsonObject | undefined;
  const mesos = args?.['org.apache.mesos'] as JsonObject | undefined;
  return mesos?.network_info as MesosNetworkInfo | undefined;
}

/**
 * Mesos NetworkInfo groups (Marathon's ipAddress.groups): extra profiles, as the net-modules
 * isolator's netgroups are, so that a task joins those groups besides its network.
 */
function mesosGroups(info: MesosNetworkInfo | undefined): string[] {
  const groups = info?.groups;
  if (groups === undefined || groups === null) return [];
  const field = '"args.org.apache.mesos.network_info.groups"';
  if (!Array.isArray(groups)) throw invalid(field, 'must be a list of group names');
  for (const [i, group] of groups.entries()) {
    if (typeof group !== 'string' || !NAME_PART.test(group) || group.length > 253) throw invalid(`${field}[${i}]`, `${JSON.stringify(group)} must be letters, digits, "_", "." and "-", starting with a letter or digit`);
  }
  return [...new Set(groups as string[])];
}

function mesosLabelPairs(info: MesosNetworkInfo): [string, string][] {
  const list = info.labels?.labels;
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw invalid('"args.org.apache.mesos.network_info.labels.labels"', 'must be a list of {key, value}');
  return list.map((l, i) => {
    if (typeof l?.key !== 'string') throw invalid(`"args.org.apache.mesos.network_info.labels.labels[${i}].key"`, 'must be a string');
    return [l.key, typeof l.value === 'string' ? l.value : ''];
  });
}

/** Specific addresses from every place a runtime or user can put them, each error naming its source. */
function requestedIps(raw: JsonObject, env: CniEnv | undefined, mesosLabels: [string, string][]): IpAddress[] {
  const sources: { field: string; values: unknown }[] = [];
  const runtimeConfig = raw.runtimeConfig as JsonObject | undefined;
  if (runtimeConfig?.ips !== undefined) sources.push({ field: 'runtimeConfig.ips', values: runtimeConfig.ips });
  const cniArgs = (raw.args as JsonObject | undefined)?.cni as JsonObject | undefined;
  if (cniArgs?.ips !== undefined) sources.push({ field: 'args.cni.ips', values: cniArgs.ips });
  const ipArg = env?.args.get('IP');
  if (ipArg) sources.push({ field: 'CNI_ARGS IP', values: ipArg.split(',') });
  for (const [key, value] of mesosLabels) {
    if (key === 'ipv4_addrs' || key === 'ipv6_addrs') sources.push({ field: `Mesos label ${key}`, values: listOf(value) });
  }
  const out: IpAddress[] = [];
  for (const { field, values } of sources) {
    if (!Array.isArray(values)) throw invalid(`"${field}"`, 'must be a list of addresses');
    for (const value of values) {
      try {
        const text = String(value).trim();
        // Runtimes pass "10.0.0.5/24" (the ips capability): the prefix says nothing to us.
        out.push(parseAddress(text.includes('/') ? text.slice(0, text.indexOf('/')) : text, field));
      } catch (err) {
        throw new CniError(CniCode.InvalidConfig, `invalid ${field}: ${messageOf(err).replace(/^invalid [^:]+: /, '')}`);
      }
    }
  }
  return out;
}

/** A label value holding addresses: a JSON list, or a comma-separated list. */
function listOf(value: string): unknown {
  const text = value.trim();
  if (text.startsWith('[')) {
    try {
      return JSON.parse(text);
    } catch {
      return [text];
    }
  }
  return text.split(',').filter((s) => s.trim() !== '');
}

function attachmentsOf(raw: JsonObject): NetConf['validAttachments'] {
  const value = raw['cni.dev/valid-attachments'] ?? raw['cni.dev/attachments'];
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw invalid('"cni.dev/valid-attachments"', 'must be a list of {containerID, ifname}');
  return value.map((a, i) => {
    if (typeof a?.containerID !== 'string' || typeof a?.ifname !== 'string') {
      throw invalid(`"cni.dev/valid-attachments[${i}]"`, 'must have string containerID and ifname');
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}
