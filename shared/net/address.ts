import { IPv4, IPv6, collapseIPv6Number } from 'ip-num';
import { InvalidInputError } from '../errors';

export type IpVersion = 4 | 6;

/** An IP address as a number, so that block and pool arithmetic is plain bigint math. */
export interface IpAddress {
  readonly version: IpVersion;
  readonly value: bigint;
}

export const ADDRESS_BITS: Record<IpVersion, number> = { 4: 32, 6: 128 };

const DOTTED_QUAD = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/** Parses a textual address (no prefix, no zone); `field` names the input in the error. */
export function parseAddress(text: string, field = 'address'): IpAddress {
  if (typeof text !== 'string') throw new InvalidInputError(field, `expected an IP address string, got ${typeof text}`);
  // ip-num tolerates some trailing junk (zone suffixes): admit only address characters.
  if (!/^[0-9A-Fa-f:.]{2,45}$/.test(text)) throw new InvalidInputError(field, `"${text}" is not an IPv4 or IPv6 address`);
  // Dotted quads are parsed here: checks read hundreds of thousands of them, and ip-num's objects
  // cost more than the rest of the check. Leading zeros are refused (they read as octal elsewhere).
  const quad = DOTTED_QUAD.exec(text);
  if (quad) {
    const octets = quad.slice(1, 5).map(Number);
    if (octets.every((o) => o <= 255)) return { version: 4, value: BigInt(((octets[0]! << 24) >>> 0) + (octets[1]! << 16) + (octets[2]! << 8) + octets[3]!) };
    throw new InvalidInputError(field, `"${text}" is not an IPv4 or IPv6 address`);
  }
  try {
    if (text.includes(':')) return { version: 6, value: IPv6.fromString(text).getValue() };
    return { version: 4, value: IPv4.fromString(text).getValue() };
  } catch {
    throw new InvalidInputError(field, `"${text}" is not an IPv4 or IPv6 address`);
  }
}

/** Canonical text: dotted quad, or RFC 5952 compressed IPv6. */
export function formatAddress(address: IpAddress): string {
  if (address.version === 4) {
    // Hot on the allocation path (every block key and record): plain arithmetic, not ip-num objects.
    const v = Number(address.value);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  return collapseIPv6Number(IPv6.fromBigInt(address.value).toString());
}

/** The address with its full-length prefix (/32 or /128), as workload endpoints record it. */
export function hostPrefix(address: IpAddress): string {
  return `${formatAddress(address)}/${ADDRESS_BITS[address.version]}`;
}

export function sameAddress(a: IpAddress, b: IpAddress): boolean {
  return a.version === b.version && a.value === b.value;
}
