import { InvalidInputError } from '../errors';
import { ADDRESS_BITS, formatAddress, parseAddress, type IpAddress, type IpVersion } from './address';

/** A network: its first address and prefix length. Always a network address (host bits zero). */
export interface Cidr {
  readonly version: IpVersion;
  readonly network: bigint;
  readonly prefix: number;
}

/**
 * Parses "a.b.c.d/n" or "x::/n". Refuses a prefix out of range and, unless `allowHostBits`,
 * an address with host bits set ("10.0.0.1/8" is a typo for a network more often than not).
 */
export function parseCidr(text: string, field = 'cidr', allowHostBits = false): Cidr {
  if (typeof text !== 'string') throw new InvalidInputError(field, `expected a CIDR string, got ${typeof text}`);
  const slash = text.indexOf('/');
  if (slash < 0) throw new InvalidInputError(field, `"${text}" has no prefix length (expected address/prefix)`);
  const address = parseAddress(text.slice(0, slash), field);
  const prefixText = text.slice(slash + 1);
  const bits = ADDRESS_BITS[address.version];
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > bits) {
    throw new InvalidInputError(field, `"${text}" has an invalid prefix length (0-${bits} for IPv${address.version})`);
  }
  const network = address.value & maskOf(address.version, prefix);
  if (network !== address.value && !allowHostBits) {
    const suggestion = formatCidr({ version: address.version, network, prefix });
    throw new InvalidInputError(field, `"${text}" is not a network address (did you mean ${suggestion}?)`);
  }
  return { version: address.version, network, prefix };
}

export function formatCidr(cidr: Cidr): string {
  return `${formatAddress({ version: cidr.version, value: cidr.network })}/${cidr.prefix}`;
}

function maskOf(version: IpVersion, prefix: number): bigint {
  const bits = BigInt(ADDRESS_BITS[version]);
  const all = (1n << bits) - 1n;
  return all ^ ((1n << (bits - BigInt(prefix))) - 1n);
}

/** How many addresses the network holds. */
export function cidrSize(cidr: Cidr): bigint {
  return 1n << BigInt(ADDRESS_BITS[cidr.version] - cidr.prefix);
}

export function cidrContains(cidr: Cidr, address: IpAddress): boolean {
  return cidr.version === address.version && (address.value & maskOf(cidr.version, cidr.prefix)) === cidr.network;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.version !== b.version) return false;
  const shorter = Math.min(a.prefix, b.prefix);
  const mask = maskOf(a.version, shorter);
  return (a.network & mask) === (b.network & mask);
}

/** The enclosing network of `address` with the given prefix (the block an address falls in). */
export function enclosingCidr(address: IpAddress, prefix: number): Cidr {
  return { version: address.version, network: address.value & maskOf(address.version, prefix), prefix };
}

/** The `index`th address of the network (0 is the network address itself). */
export function addressAt(cidr: Cidr, index: bigint): IpAddress {
  return { version: cidr.version, value: cidr.network + index };
}

export function sameCidr(a: Cidr, b: Cidr): boolean {
  return a.version === b.version && a.network === b.network && a.prefix === b.prefix;
}
