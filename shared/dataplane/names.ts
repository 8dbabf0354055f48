/**
 * Everything that reaches an `ip` command is checked here first: interface names, namespace
 * paths, MTUs and MAC addresses. Commands run without a shell, but `ip -batch` reads words from
 * its input, so a name with white space could still smuggle in another command.
 */
import { InvalidInputError } from '../errors';

const HOST_PREFIX = 'cali';

/** CNI's rules for interface names, plus the kernel's 15-character limit. */
export function validateInterfaceName(name: unknown, field: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidInputError(field, 'an interface name is required');
  if (name.length > 15) throw new InvalidInputError(field, `"${name}" is longer than 15 characters`);
  if (name === '.' || name === '..') throw new InvalidInputError(field, `"${name}" is not allowed`);
  if (!/^[A-Za-z0-9_.@-]+$/.test(name)) throw new InvalidInputError(field, `"${name}" may hold only letters, digits and _ . @ -`);
  return name;
}

/**
 * The host end of a workload's veth: `cali` + the first 11 characters of the workload ID, as
 * Calico names them (so Felix and operators recognise them).
 */
export function hostVethName(workloadId: string): string {
  const part = workloadId.replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 11);
  if (part.length === 0) throw new InvalidInputError('workload ID', `"${workloadId}" gives no usable interface name`);
  return `${HOST_PREFIX}${part}`;
}

export function validateNetnsPath(path: unknown, field: string): string {
  if (typeof path !== 'string' || !path.startsWith('/') || /[\0\n]/.test(path) || path.length > 4096) {
    throw new InvalidInputError(field, `${JSON.stringify(path)} is not an absolute path`);
  }
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
