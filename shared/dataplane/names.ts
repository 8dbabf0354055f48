/**
 * Everything that reaches an `ip` command is checked here first: interface names, namespace
 * paths, MTUs and MAC addresses. Commands run without a shell, but `ip -batch` reads words from
 * its input, so a name with white space could still smuggle in another command.
 */
import { InvalidInputError } from '../errors';

/**
 * Words iproute2 reads as keywords where a name could stand (ip link/addr/route/neigh). Our
 * commands put every name after `name` or `dev`, but a name that is a keyword is still refused:
 * an operator's own `ip` commands would misread it too.
 */
const IP_KEYWORDS = new Set([
  'add', 'address', 'addrgenmode', 'alias', 'all', 'allmulticast', 'any', 'anycast', 'arp', 'blackhole', 'brd', 'broadcast',
  'carrier', 'change', 'default', 'del', 'delete', 'dev', 'down', 'dsfield', 'dynamic', 'flush', 'from', 'get', 'global',
  'group', 'gso_max_segs', 'gso_max_size', 'help', 'host', 'index', 'label', 'link', 'list', 'lladdr', 'local', 'ls', 'lst',
  'master', 'metric', 'mode', 'mtu', 'multicast', 'name', 'nat', 'netns', 'netnsid', 'nexthop', 'nodad', 'nomaster', 'nud',
  'numrxqueues', 'numtxqueues', 'onlink', 'peer', 'permanent', 'pref', 'preference', 'prohibit', 'promisc', 'proto',
  'protocol', 'protodown', 'proxy', 'qlen', 'realm', 'realms', 'replace', 'router', 'scope', 'set', 'show', 'site', 'src',
  'state', 'table', 'throw', 'to', 'tos', 'trailers', 'txqlen', 'txqueuelen', 'type', 'unicast', 'unreachable', 'up', 'vf',
  'via', 'vrf', 'weight', 'xdp',
]);

/** Why `name` cannot be an interface name, or undefined when it can. */
export function interfaceNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'an interface name is required';
  if (name.length > 15) return `"${name}" is longer than 15 characters`;
  if (name === '.' || name === '..') return `"${name}" is not allowed`;
  if (!/^[A-Za-z0-9_.@-]+$/.test(name)) return `"${name}" may hold only letters, digits and _ . @ -`;
  if (name.startsWith('-')) return `"${name}" must not start with "-" (ip would read it as an option)`;
  if (IP_KEYWORDS.has(name.toLowerCase())) return `"${name}" is a keyword of the ip command`;
  return undefined;
}

/** CNI's rules for interface names, the kernel's 15-character limit, and what `ip` can read. */
export function validateInterfaceName(name: unknown, field: string): string {
  const problem = typeof name === 'string' ? interfaceNameProblem(name) : 'an interface name is required';
  if (problem) throw new InvalidInputError(field, problem);
  return name as string;
}

/** A host link's alias naming its owner (identity.linkOwnerTag): one word, within the kernel's 255 bytes. */
export function validateOwnerTag(tag: unknown): string {
  if (typeof tag !== 'string' || !/^[A-Za-z0-9:_.-]{1,255}$/.test(tag)) throw new InvalidInputError('owner tag', `${JSON.stringify(tag)} is not a link owner tag`);
  return tag;
}

/** An absolute path with no white space: it is one word of an `ip` command line. */
export function validateNetnsPath(path: unknown, field: string): string {
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > 4096) {
    throw new InvalidInputError(field, `${JSON.stringify(path)} is not an absolute path`);
  }
  if (/[\s\0]/.test(path)) throw new InvalidInputError(field, `${JSON.stringify(path)} must not contain white space`);
  return path;
}

export function validateMtu(mtu: unknown, field = 'mtu'): number {
  if (!Number.isInteger(mtu) || (mtu as number) < 576 || (mtu as number) > 65535) {
    throw new InvalidInputError(field, `${JSON.stringify(mtu)} must be a whole number from 576 to 65535`);
  }
  return mtu as number;
}

export function validateMac(mac: unknown, field: string): string {
  if (typeof mac !== 'string' || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw new InvalidInputError(field, `${JSON.stringify(mac)} is not a MAC address`);
  return mac.toLowerCase();
}

export function validateMetric(metric: unknown, field = 'route metric'): number {
  if (!Number.isInteger(metric) || (metric as number) < 0 || (metric as number) > 0xffffffff) {
    throw new InvalidInputError(field, `${JSON.stringify(metric)} must be a whole number from 0 to 4294967295`);
  }
  return metric as number;
}
