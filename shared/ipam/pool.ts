/** IP pools: validation of what an operator asks for, and the decoded form the allocator uses. */
import { ADDRESS_BITS, type IpAddress, type IpVersion } from '../net/address';
import { cidrContains, cidrSize, cidrsOverlap, formatCidr, parseCidr, type Cidr } from '../net/cidr';
import { MalformedDataError, type Entry, type IPPoolSpec, type Resource, decodeResource } from '../datastore';
import { messageOf } from '../errors';
import { BLOCK_SIZE_RANGE } from './block';
import { InvalidPoolError } from './errors';


export interface Pool {
  readonly name: string;
  readonly cidr: Cidr;
  readonly blockSize: number;
  readonly disabled: boolean;
  /** The etcd key and revision, so an allocation can be guarded against a pool that changed. */
  readonly key: string;
  readonly modRevision: string;
}

export const ENCAPSULATION_MODES = ['Never', 'Always', 'CrossSubnet'] as const;
export type EncapsulationMode = (typeof ENCAPSULATION_MODES)[number];

/** How traffic to the pool's blocks on other hosts is carried (shared/routing/desired-routes.ts). */
export interface PoolEncapsulation {
  readonly cidr: Cidr;
  readonly ipipMode: EncapsulationMode;
  readonly vxlanMode: EncapsulationMode;
}

/** Networks no workload address may come from (parsed on first use: start-up time counts for CNI). */
const RESERVED: readonly [string, string][] = [
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local (169.254.1.1 is the workloads\' gateway)'],
  ['224.0.0.0/4', 'multicast'],
  ['::1/128', 'loopback'],
  ['fe80::/10', 'link-local'],
  ['ff00::/8', 'multicast'],
];

/** Checks a pool spec and fills in defaults; throws InvalidPoolError saying what is wrong. */
export function validatePoolSpec(name: string, spec: IPPoolSpec): { cidr: Cidr; spec: IPPoolSpec } {
  if (!/^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/.test(name)) {
    throw new InvalidPoolError(`pool name "${name}" must be lower-case letters, digits, "-" and "." (as a DNS name)`);
  }
  let cidr: Cidr;
  try {
    cidr = parseCidr(spec.cidr, 'spec.cidr');
  } catch (err) {
    throw new InvalidPoolError(`pool ${name}: ${messageOf(err)}`);
  }
  const range = BLOCK_SIZE_RANGE[cidr.version];
  const blockSize = spec.blockSize ?? range.default;
  if (!Number.isInteger(blockSize) || blockSize < range.min || blockSize > range.max) {
    throw new InvalidPoolError(`pool ${name}: blockSize ${blockSize} is out of range for IPv${cidr.version} (${range.min}-${range.max})`);
  }
  if (cidr.prefix > blockSize) {
    throw new InvalidPoolError(`pool ${name}: ${spec.cidr} is smaller than one block (/${blockSize}); use a larger pool or a larger blockSize`);
  }
  for (const [reserved, why] of RESERVED) {
    if (cidrsOverlap(parseCidr(reserved), cidr)) throw new InvalidPoolError(`pool ${name}: ${spec.cidr} overlaps ${reserved} (${why})`);
  }
  if (spec.disabled !== undefined && typeof spec.disabled !== 'boolean') {
    throw new InvalidPoolError(`pool ${name}: disabled must be true or false`);
  }
  try {
    encapsulationOf(cidr, spec);
  } catch (err) {
    throw new InvalidPoolError(`pool ${name}: ${messageOf(err)}`);
  }
  return {
    cidr,
    spec: { nodeSelector: 'all()', ipipMode: 'Never', vxlanMode: 'Never', natOutgoing: false, ...spec, cidr: formatCidr(cidr), blockSize },
  };
}

/**
 * A pool's encapsulation, checked as Calico checks it: each mode one of Never, Always and
 * CrossSubnet; not IPIP and VXLAN at once; none for IPv6 (IPIP carries IPv4 only; VXLAN for IPv6
 * is not supported here). Throws a plain Error naming the field.
 */
export function encapsulationOf(cidr: Cidr, spec: Pick<IPPoolSpec, 'ipipMode' | 'vxlanMode'>): PoolEncapsulation {
  const modeOf = (field: 'ipipMode' | 'vxlanMode'): EncapsulationMode => {
    const mode: unknown = spec[field] ?? 'Never';
    if (!(ENCAPSULATION_MODES as readonly unknown[]).includes(mode)) throw new Error(`spec.${field} ${JSON.stringify(mode)} is not one of ${ENCAPSULATION_MODES.join(', ')}`);
    return mode as EncapsulationMode;
  };
  const ipipMode = modeOf('ipipMode');
  const vxlanMode = modeOf('vxlanMode');
  if (ipipMode !== 'Never' && vxlanMode !== 'Never') throw new Error('spec.ipipMode and spec.vxlanMode cannot both be enabled');
  if (cidr.version === 6 && ipipMode !== 'Never') throw new Error('spec.ipipMode must be Never for an IPv6 pool (IPIP carries IPv4 only)');
  if (cidr.version === 6 && vxlanMode !== 'Never') throw new Error('spec.vxlanMode must be Never for an IPv6 pool (VXLAN for IPv6 is not supported)');
  return { cidr, ipipMode, vxlanMode };
}

export function rejectOverlap(name: string, cidr: Cidr, existing: readonly Pool[]): void {
  const clash = existing.find((p) => p.name !== name && cidrsOverlap(p.cidr, cidr));
  if (clash) throw new InvalidPoolError(`pool ${name}: ${formatCidr(cidr)} overlaps pool ${clash.name} (${formatCidr(clash.cidr)})`);
}

export function poolFromEntry(entry: Entry): Pool {
  const resource: Resource<'IPPool'> = decodeResource('IPPool', entry);
  let cidr: Cidr;
  try {
    cidr = parseCidr(resource.spec.cidr, 'spec.cidr');
  } catch (err) {
    throw new MalformedDataError(entry.key, messageOf(err));
  }
  const range = BLOCK_SIZE_RANGE[cidr.version];
  const blockSize = resource.spec.blockSize ?? range.default;
  if (!Number.isInteger(blockSize) || blockSize < Math.max(range.min, cidr.prefix) || blockSize > range.max) {
    throw new MalformedDataError(entry.key, `field "spec.blockSize" (${blockSize}) does not fit pool ${resource.spec.cidr}`);
  }
  return {
    name: resource.metadata.name,
    cidr,
    blockSize,
    disabled: resource.spec.disabled === true,
    key: entry.key,
    modRevision: entry.modRevision,
  };
}

/** How many blocks the pool holds. */
export function blockCount(pool: Pool): bigint {
  return 1n << BigInt(pool.blockSize - pool.cidr.prefix);
}

/** The `index`th block of the pool. */
export function blockAt(pool: Pool, index: bigint): Cidr {
  const shift = BigInt(ADDRESS_BITS[pool.cidr.version] - pool.blockSize);
  return { version: pool.cidr.version, network: pool.cidr.network + (index << shift), prefix: pool.blockSize };
}

export function poolOf(pools: readonly Pool[], address: IpAddress): Pool | undefined {
  return pools.find((p) => cidrContains(p.cidr, address));
}

/**
 * The pools an allocation may use: enabled pools of the version, or exactly those asked for
 * (by name or CIDR). Asking for a pool that does not exist or is disabled is an error.
 */
export function selectPools(all: readonly Pool[], version: IpVersion, wanted: readonly string[] | undefined): Pool[] {
  const ofVersion = all.filter((p) => p.cidr.version === version);
  if (!wanted || wanted.length === 0) return ofVersion.filter((p) => !p.disabled);
  return wanted.map((w) => {
    const pool = ofVersion.find((p) => p.name === w || formatCidr(p.cidr) === w);
    if (!pool) throw new InvalidPoolError(`IPv${version} pool "${w}" does not exist`);
    if (pool.disabled) throw new InvalidPoolError(`IPv${version} pool "${w}" is disabled`);
    return pool;
  });
}

/**
 * Ordinals of the block that are never handed out: the pool's own network and broadcast
 * addresses, in the blocks that hold them (an IPv4 pool of /30 or larger), since a router or a
 * host on a subnet of that shape may treat them as such.
 */
export function reservedOrdinals(pool: Pool, block: Cidr): Set<number> {
  const reserved = new Set<number>();
  if (pool.cidr.version !== 4 || pool.cidr.prefix > 30) return reserved;
  const last = pool.cidr.network + cidrSize(pool.cidr) - 1n;
  for (const address of [pool.cidr.network, last]) {
    if (cidrContains(block, { version: 4, value: address })) reserved.add(Number(address - block.network));
  }
  return reserved;
}

/** Whether `cidr` is one of the pool's blocks. */
export function poolHolds(pool: Pool, cidr: Cidr): boolean {
  return cidr.prefix === pool.blockSize && cidrContains(pool.cidr, { version: cidr.version, value: cidr.network });
}
