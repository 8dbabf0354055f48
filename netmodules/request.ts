/**
 * What the net-modules isolator sends (one JSON object, `{"command", "args"}`; see
 * ../shared/docs/netmodules.md A.2), checked into typed requests. Numbers come as JSON numbers;
 * numeric strings are accepted too; anything else is refused with a message naming the field.
 * Static addresses may also come in the `ipv4_addrs` label, as a JSON list (read as JSON, never
 * run as code).
 */
import { InvalidInputError } from '../shared/errors';
import { checkJsonDepth, parseBoundedJson } from '../shared/json';
import { NAME_PART } from '../shared/endpoints/identity';
import { parseAddress, type IpAddress, type IpVersion } from '../shared/net';

export interface Label {
  readonly key: string;
  readonly value: string;
}

interface Placement {
  /** What the isolator calls the agent (recorded; the datastore's node name comes from our settings). */
  readonly hostname: string;
  readonly netgroups: readonly string[];
  readonly labels: readonly Label[];
}

export type NetmodulesRequest =
  | ({ readonly command: 'allocate'; readonly uid: string; readonly num4: number; readonly num6: number; readonly static4: readonly IpAddress[] } & Placement)
  | ({ readonly command: 'reserve'; readonly uid: string; readonly addresses: readonly IpAddress[] } & Placement)
  | { readonly command: 'release'; readonly by: { readonly ips: readonly IpAddress[] } | { readonly uid: string } }
  | ({ readonly command: 'isolate'; readonly containerId: string; readonly pid: number; readonly addresses: readonly IpAddress[] } & Placement)
  | { readonly command: 'cleanup'; readonly hostname: string; readonly containerId: string };

export const COMMANDS = ['allocate', 'reserve', 'release', 'isolate', 'cleanup'] as const;
/** The isolator reads at most 40 KiB of answer; a request is far smaller than this. */
const MAX_REQUEST_BYTES = 256 << 10;
/** The most addresses of one family a container may ask for. */
const MAX_ADDRESSES = 256;
/** Linux's largest pid (pid_max may be set up to 2^22). */
const MAX_PID = 4_194_304;
const MAX_NAME = 253;

type Args = Record<string, unknown>;

const invalid = (field: string, reason: string) => new InvalidInputError(field, reason);
const shown = (value: unknown) => JSON.stringify(value)?.slice(0, 100) ?? String(value);

function requiredString(args: Args, field: string): string {
  const value = args[field];
  if (value === undefined || value === null) throw invalid(field, 'is missing');
  if (typeof value !== 'string') throw invalid(field, `must be a string, not ${shown(value)}`);
  return value;
}

/** A name that becomes part of a handle or record name: letters, digits, "_", "." and "-". */
function name(args: Args, field: string): string {
  const value = args[field];
  const text = typeof value === 'number' && Number.isSafeInteger(value) ? String(value) : requiredString(args, field);
  if (!NAME_PART.test(text) || text.length > MAX_NAME) throw invalid(field, `${shown(text)} must be letters, digits, "_", "." and "-" (at most ${MAX_NAME}), starting with a letter or digit`);
  return text;
}

/** A whole number given as a JSON number or a numeric string. */
function count(args: Args, field: string, min: number, max: number, fallback?: number): number {
  const value = args[field];
  if ((value === undefined || value === null) && fallback !== undefined) return fallback;
  if (value === undefined || value === null) throw invalid(field, 'is missing');
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw invalid(field, `must be a whole number from ${min} to ${max}, not ${shown(value)}`);
  return n;
}

function stringList(args: Args, field: string): string[] {
  const value = args[field];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw invalid(field, `must be a list of strings, not ${shown(value)}`);
  return value as string[];
}

function addresses(texts: readonly string[], field: string, version?: IpVersion): IpAddress[] {
  if (texts.length > MAX_ADDRESSES) throw invalid(field, `lists ${texts.length} addresses; at most ${MAX_ADDRESSES}`);
  const parsed = texts.map((text, i) => {
    const address = parseAddress(text, `${field}[${i}]`);
    if (version !== undefined && address.version !== version) throw invalid(`${field}[${i}]`, `${text} is an IPv${address.version} address, in the IPv${version} list`);
    return address;
  });
  const seen = new Set<string>();
  for (const [i, address] of parsed.entries()) {
    const key = `${address.version}/${address.value}`;
    if (seen.has(key)) throw invalid(`${field}[${i}]`, `${texts[i]} is listed twice`);
    seen.add(key);
  }
  return parsed;
}

function labels(args: Args): Label[] {
  const value = args.labels;
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw invalid('labels', `must be a list of {"key", "value"} objects, not ${shown(value)}`);
  return value.map((label, i) => {
    const object = typeof label === 'object' && label !== null && !Array.isArray(label) ? (label as Args) : undefined;
    if (!object || typeof object.key !== 'string') throw invalid(`labels[${i}]`, `must be {"key": string, "value": string}, not ${shown(label)}`);
    // mesos.Label's value is optional: a label without one has the empty value.
    if (object.value !== undefined && object.value !== null && typeof object.value !== 'string') throw invalid(`labels[${i}].value`, `must be a string, not ${shown(object.value)}`);
    return { key: object.key, value: typeof object.value === 'string' ? object.value : '' };
  });
}

function netgroups(args: Args): string[] {
  const groups = stringList(args, 'netgroups');
  for (const [i, group] of groups.entries()) {
    if (!NAME_PART.test(group) || group.length > MAX_NAME) throw invalid(`netgroups[${i}]`, `${shown(group)} must be letters, digits, "_", "." and "-", starting with a letter or digit`);
  }
  return [...new Set(groups)];
}

function placement(args: Args): Placement {
  return { hostname: requiredString(args, 'hostname'), netgroups: netgroups(args), labels: labels(args) };
}

/** Static IPv4 addresses asked for in the `ipv4_addrs` label: a JSON list of strings. */
function labelAddresses(all: readonly Label[]): IpAddress[] {
  const label = all.find((l) => l.key === 'ipv4_addrs');
  if (!label) return [];
  let list: unknown;
  try {
    list = parseBoundedJson(label.value, 'labels.ipv4_addrs');
  } catch {
    list = undefined;
  }
  if (!Array.isArray(list) || !list.every((v) => typeof v === 'string')) {
    throw invalid('labels.ipv4_addrs', `must be a JSON list of IPv4 addresses such as ["10.0.0.5"], not ${shown(label.value)}`);
  }
  return addresses(list as string[], 'labels.ipv4_addrs', 4);
}

export function parseRequest(text: string): NetmodulesRequest {
  if (Buffer.byteLength(text) > MAX_REQUEST_BYTES) throw invalid('request', `is ${Buffer.byteLength(text)} bytes; at most ${MAX_REQUEST_BYTES}`);
  let document: unknown;
  try {
    checkJsonDepth(text, 'request');
    document = JSON.parse(text);
  } catch (err) {
    if (err instanceof InvalidInputError) throw err;
    throw invalid('request', `is not JSON (${(err as Error).message})`);
  }
  if (typeof document !== 'object' || document === null || Array.isArray(document)) throw invalid('request', 'must be a JSON object {"command", "args"}');
  const { command, args } = document as Args;
  if (command === undefined || command === null) throw invalid('command', `is missing (one of ${COMMANDS.join(', ')})`);
  if (typeof command !== 'string' || !(COMMANDS as readonly string[]).includes(command)) throw invalid('command', `${shown(command)} is not one of ${COMMANDS.join(', ')}`);
  if (args === undefined || args === null) throw invalid('args', 'is missing');
  if (typeof args !== 'object' || Array.isArray(args)) throw invalid('args', 'must be an object');
  const a = args as Args;
  switch (command as (typeof COMMANDS)[number]) {
    case 'allocate': {
      const where = placement(a);
      const static4 = labelAddresses(where.labels);
      const num4 = count(a, 'num_ipv4', 0, MAX_ADDRESSES);
      return { command: 'allocate', uid: name(a, 'uid'), num4, num6: count(a, 'num_ipv6', 0, MAX_ADDRESSES, 0), static4, ...where };
    }
    case 'reserve': {
      const reserved = [...addresses(stringList(a, 'ipv4_addrs'), 'ipv4_addrs', 4), ...addresses(stringList(a, 'ipv6_addrs'), 'ipv6_addrs', 6)];
      if (reserved.length === 0) throw invalid('ipv4_addrs', 'and ipv6_addrs are both empty: nothing to reserve');
      return { command: 'reserve', uid: name(a, 'uid'), addresses: reserved, ...placement(a) };
    }
    case 'release': {
      const hasIps = a.ips !== undefined && a.ips !== null;
      const hasUid = a.uid !== undefined && a.uid !== null;
      if (hasIps === hasUid) throw invalid('args', hasIps ? 'give either "ips" or "uid", not both' : 'needs "ips" or "uid"');
      return { command: 'release', by: hasIps ? { ips: addresses(stringList(a, 'ips'), 'ips') } : { uid: name(a, 'uid') } };
    }
    case 'isolate': {
      const wired = [...addresses(stringList(a, 'ipv4_addrs'), 'ipv4_addrs', 4), ...addresses(stringList(a, 'ipv6_addrs'), 'ipv6_addrs', 6)];
      if (wired.length === 0) throw invalid('ipv4_addrs', 'and ipv6_addrs are both empty: a container needs an address');
      return { command: 'isolate', containerId: name(a, 'container_id'), pid: count(a, 'pid', 1, MAX_PID), addresses: wired, ...placement(a) };
    }
    case 'cleanup':
      return { command: 'cleanup', hostname: requiredString(a, 'hostname'), containerId: name(a, 'container_id') };
  }
}
