/**
 * The IPAM records under `<prefix>/ipam/v2/` exactly as Calico writes them, and strict decoders:
 * a block whose arrays disagree would hand out an address twice, so it is refused, naming its key.
 */
import { formatCidr, cidrSize, parseCidr, sameCidr, type Cidr } from '../net/cidr';
import { FieldReader, parseJsonObject, isObject } from './codec';
import { MalformedDataError } from './errors';

export interface AllocationAttributeRecord {
  readonly handle_id: string | null;
  readonly secondary: Readonly<Record<string, string>> | null;
}

export interface BlockRecord {
  readonly cidr: string;
  readonly affinity: string | null;
  readonly strictAffinity: boolean;
  readonly allocations: readonly (number | null)[];
  readonly unallocated: readonly number[];
  readonly attributes: readonly AllocationAttributeRecord[];
  readonly deleted: boolean;
}

export type AffinityState = 'pending' | 'confirmed' | 'pendingDeletion';

export interface AffinityRecord {
  readonly state: AffinityState;
  readonly deleted: boolean;
}

export interface HandleRecord {
  /** Block CIDR -> how many of the handle's addresses it holds. */
  readonly block: Readonly<Record<string, number>>;
  readonly deleted: boolean;
}

export interface IpamConfigRecord {
  readonly strict_affinity: boolean;
  readonly auto_allocate_blocks: boolean;
  readonly maxBlocksPerHost: number;
}

export const DEFAULT_IPAM_CONFIG: IpamConfigRecord = { strict_affinity: false, auto_allocate_blocks: true, maxBlocksPerHost: 0 };

/** Bounds what a decoder will expand: a /20 (IPv4) or /116 (IPv6) block has 4096 addresses. */
const MAX_BLOCK_ADDRESSES = 4096n;

export function decodeBlock(key: string, text: string, expected?: Cidr): BlockRecord {
  const r = new FieldReader(key, parseJsonObject(key, text));
  const cidrText = r.string('cidr');
  let cidr: Cidr;
  try {
    cidr = parseCidr(cidrText);
  } catch {
    throw new MalformedDataError(key, `field "cidr" is not a network CIDR: "${cidrText}"`);
  }
  if (expected && !sameCidr(cidr, expected)) throw new MalformedDataError(key, `field "cidr" is ${cidrText}, the key says ${formatCidr(expected)}`);
  const size = cidrSize(cidr);
  if (size > MAX_BLOCK_ADDRESSES) throw new MalformedDataError(key, `block ${cidrText} is larger than any allowed block size`);

  const attributes = r.array('attributes').map((a, i): AllocationAttributeRecord => {
    if (!isObject(a)) throw new MalformedDataError(key, `attributes[${i}] must be an object`);
    const ar = new FieldReader(key, a, `attributes[${i}].`);
    return { handle_id: ar.optionalString('handle_id') ?? null, secondary: ar.stringMap('secondary') ?? null };
  });
  const allocations = r.array('allocations').map((a, i) => {
    if (a === null) return null;
    if (Number.isInteger(a) && (a as number) >= 0 && (a as number) < attributes.length) return a as number;
    throw new MalformedDataError(key, `allocations[${i}] must be null or an index into attributes, got ${JSON.stringify(a)}`);
  });
  if (BigInt(allocations.length) !== size) {
    throw new MalformedDataError(key, `allocations has ${allocations.length} entries, block ${cidrText} has ${size} addresses`);
  }
  const unallocated = r.array('unallocated').map((o, i) => {
    if (Number.isInteger(o) && (o as number) >= 0 && (o as number) < allocations.length) return o as number;
    throw new MalformedDataError(key, `unallocated[${i}] must be an ordinal of the block, got ${JSON.stringify(o)}`);
  });
  const free = new Set(unallocated);
  const freeInAllocations = allocations.filter((a) => a === null).length;
  if (free.size !== unallocated.length || free.size !== freeInAllocations || unallocated.some((o) => allocations[o] !== null)) {
    throw new MalformedDataError(key, 'unallocated and allocations disagree about which addresses are free');
  }
  return {
    cidr: cidrText,
    affinity: r.optionalString('affinity') ?? null,
    strictAffinity: r.boolean('strictAffinity', false),
    allocations,
    unallocated,
    attributes,
    deleted: r.boolean('deleted', false),
  };
}

export function encodeBlock(block: BlockRecord): string {
  return JSON.stringify({
    cidr: block.cidr,
    affinity: block.affinity,
    strictAffinity: block.strictAffinity,
    allocations: block.allocations,
    unallocated: block.unallocated,
    attributes: block.attributes,
    deleted: block.deleted,
  });
}

const AFFINITY_STATES: readonly AffinityState[] = ['pending', 'confirmed', 'pendingDeletion'];

export function decodeAffinity(key: string, text: string): AffinityRecord {
  const r = new FieldReader(key, parseJsonObject(key, text));
  const state = r.optionalString('state') ?? 'confirmed';
  if (!AFFINITY_STATES.includes(state as AffinityState)) {
    throw new MalformedDataError(key, `field "state" must be one of ${AFFINITY_STATES.join(', ')}, got "${state}"`);
  }
  return { state: state as AffinityState, deleted: r.boolean('deleted', false) };
}

export function encodeAffinity(affinity: AffinityRecord): string {
  return JSON.stringify({ state: affinity.state, deleted: affinity.deleted });
}

export function decodeHandle(key: string, text: string): HandleRecord {
  const r = new FieldReader(key, parseJsonObject(key, text));
  const blocks = r.optionalObject('block') ?? {};
  for (const [cidr, count] of Object.entries(blocks)) {
    if (!Number.isInteger(count) || (count as number) < 0) {
      throw new MalformedDataError(key, `field "block.${cidr}" must be a count of addresses, got ${JSON.stringify(count)}`);
    }
  }
  return { block: blocks as Record<string, number>, deleted: r.boolean('deleted', false) };
}

export function encodeHandle(handle: HandleRecord): string {
  return JSON.stringify({ block: handle.block, deleted: handle.deleted });
}

export function decodeIpamConfig(key: string, text: string): IpamConfigRecord {
  const r = new FieldReader(key, parseJsonObject(key, text));
  const maxBlocksPerHost = r.integer('maxBlocksPerHost', 0);
  if (maxBlocksPerHost < 0) throw new MalformedDataError(key, 'field "maxBlocksPerHost" must not be negative');
  return {
    strict_affinity: r.boolean('strict_affinity', false),
    auto_allocate_blocks: r.boolean('auto_allocate_blocks', true),
    maxBlocksPerHost,
  };
}

export function encodeIpamConfig(config: IpamConfigRecord): string {
  return JSON.stringify(config);
}
