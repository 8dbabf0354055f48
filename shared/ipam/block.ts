/**
 * Allocation blocks as pure values. Every mutation returns a new block and touches nothing else,
 * so the allocator can run it inside a compare-and-swap loop and the rules are unit tested alone.
 * The layout mirrors Calico's allocationBlock: `allocations[ordinal]` is null (free) or an index
 * into `attributes`; `unallocated` lists free ordinals, taken from the front, returned to the back.
 */
import type { AllocationAttributeRecord, BlockRecord } from '../datastore/ipam-records';
import { formatAddress, type IpAddress } from '../net/address';
import { addressAt, cidrContains, cidrSize, type Cidr } from '../net/cidr';
import { AddressInUseError } from './errors';

export type HandleId = string;

/** Who an address belongs to: its handle, and free-form facts (node, container, interface, time). */
export type AllocationAttribute = AllocationAttributeRecord;

/** The stored block with its CIDR parsed; `affinity` is `host:<node>` when a host has claimed it. */
export type Block = Omit<BlockRecord, 'cidr' | 'deleted'> & { readonly cidr: Cidr };

export function hostAffinity(node: string): string {
  return `host:${node}`;
}

export function newBlock(cidr: Cidr, node: string | null, strictAffinity = false): Block {
  const size = Number(cidrSize(cidr));
  return {
    cidr,
    affinity: node === null ? null : hostAffinity(node),
    strictAffinity,
    allocations: new Array<number | null>(size).fill(null),
    unallocated: Array.from({ length: size }, (_, i) => i),
    attributes: [],
  };
}

export function ordinalOf(block: Block, address: IpAddress): number | undefined {
  if (!cidrContains(block.cidr, address)) return undefined;
  return Number(address.value - block.cidr.network);
}

export function inUseCount(block: Block): number {
  return block.allocations.length - block.unallocated.length;
}

export function isEmpty(block: Block): boolean {
  return block.unallocated.length === block.allocations.length;
}

/** The attribute index for (handle, secondary), reusing an identical entry as Calico does. */
function withAttribute(attributes: readonly AllocationAttribute[], attribute: AllocationAttribute) {
  const found = attributes.findIndex(
    (a) => a.handle_id === attribute.handle_id && sameSecondary(a.secondary, attribute.secondary),
  );
  if (found >= 0) return { attributes, index: found };
  return { attributes: [...attributes, attribute], index: attributes.length };
}

function sameSecondary(a: AllocationAttribute['secondary'], b: AllocationAttribute['secondary']): boolean {
  if (a === null || b === null) return a === b;
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

/** Takes up to `count` free addresses from the front of the free list. */
export function autoAssign(block: Block, count: number, attribute: AllocationAttribute): { block: Block; addresses: IpAddress[] } {
  const taken = block.unallocated.slice(0, Math.max(0, count));
  if (taken.length === 0) return { block, addresses: [] };
  const { attributes, index } = withAttribute(block.attributes, attribute);
  const allocations = block.allocations.slice();
  for (const ordinal of taken) allocations[ordinal] = index;
  return {
    block: { ...block, allocations, attributes, unallocated: block.unallocated.slice(taken.length) },
    addresses: taken.map((ordinal) => addressAt(block.cidr, BigInt(ordinal))),
  };
}

/** Allocates exactly `address`; throws AddressInUseError when it is taken. */
export function assignAddress(block: Block, address: IpAddress, attribute: AllocationAttribute): Block {
  const ordinal = ordinalOf(block, address);
  if (ordinal === undefined) throw new RangeError(`${formatAddress(address)} is not in this block`);
  const current = block.allocations[ordinal];
  if (current !== null && current !== undefined) {
    throw new AddressInUseError(formatAddress(address), block.attributes[current]?.handle_id ?? null);
  }
  const { attributes, index } = withAttribute(block.attributes, attribute);
  const allocations = block.allocations.slice();
  allocations[ordinal] = index;
  return { ...block, allocations, attributes, unallocated: block.unallocated.filter((o) => o !== ordinal) };
}

export interface Release {
  readonly block: Block;
  /** How many addresses each handle lost, to keep the handle records in step. */
  readonly releasedByHandle: ReadonlyMap<HandleId, number>;
  readonly released: readonly IpAddress[];
  /** Addresses of the request that were not allocated (or not in this block): nothing to do. */
  readonly notAllocated: readonly IpAddress[];
}

function releaseOrdinals(block: Block, ordinals: readonly number[]): Release {
  const allocations = block.allocations.slice();
  const releasedByHandle = new Map<HandleId, number>();
  const freed: number[] = [];
  for (const ordinal of new Set(ordinals)) {
    const index = allocations[ordinal];
    if (index === null || index === undefined) continue;
    const handle = block.attributes[index]?.handle_id;
    if (handle) releasedByHandle.set(handle, (releasedByHandle.get(handle) ?? 0) + 1);
    allocations[ordinal] = null;
    freed.push(ordinal);
  }
  const compacted = dropUnusedAttributes(block.attributes, allocations);
  return {
    block: { ...block, ...compacted, unallocated: [...block.unallocated, ...freed] },
    releasedByHandle,
    released: freed.map((o) => addressAt(block.cidr, BigInt(o))),
    notAllocated: [],
  };
}

/** Frees the given addresses; those not allocated (or not in the block) are reported, not errors. */
export function releaseAddresses(block: Block, addresses: readonly IpAddress[]): Release {
  const ordinals: number[] = [];
  const notAllocated: IpAddress[] = [];
  for (const address of addresses) {
    const ordinal = ordinalOf(block, address);
    if (ordinal === undefined || block.allocations[ordinal] === null) notAllocated.push(address);
    else ordinals.push(ordinal);
  }
  return { ...releaseOrdinals(block, ordinals), notAllocated };
}

export function ordinalsOfHandle(block: Block, handle: HandleId): number[] {
  const ordinals: number[] = [];
  block.allocations.forEach((index, ordinal) => {
    if (index !== null && block.attributes[index]?.handle_id === handle) ordinals.push(ordinal);
  });
  return ordinals;
}

export function releaseHandle(block: Block, handle: HandleId): Release {
  return releaseOrdinals(block, ordinalsOfHandle(block, handle));
}

/** Drops attribute entries no allocation points at any more and renumbers the rest. */
function dropUnusedAttributes(attributes: readonly AllocationAttribute[], allocations: (number | null)[]) {
  const used = new Set(allocations.filter((i): i is number => i !== null));
  if (used.size === attributes.length) return { attributes, allocations };
  const renumber = new Map<number, number>();
  const kept: AllocationAttribute[] = [];
  attributes.forEach((attribute, index) => {
    if (!used.has(index)) return;
    renumber.set(index, kept.length);
    kept.push(attribute);
  });
  return { attributes: kept, allocations: allocations.map((i) => (i === null ? null : renumber.get(i)!)) };
}

/**
 * Adds facts to one address's attribute (the owner learned after allocation, as Docker's
 * CreateEndpoint tells which endpoint an address went to). Addresses sharing the old attribute keep it.
 */
export function annotateAddress(block: Block, address: IpAddress, facts: Readonly<Record<string, string>>): Block {
  const ordinal = ordinalOf(block, address);
  const index = ordinal === undefined ? null : block.allocations[ordinal];
  if (ordinal === undefined || index === null || index === undefined) throw new RangeError(`${formatAddress(address)} is not allocated in this block`);
  const old = block.attributes[index]!;
  const { attributes, index: next } = withAttribute(block.attributes, { handle_id: old.handle_id, secondary: { ...old.secondary, ...facts } });
  const allocations = block.allocations.slice();
  allocations[ordinal] = next;
  return { ...block, ...dropUnusedAttributes(attributes, allocations) };
}

export function attributeOf(block: Block, address: IpAddress): AllocationAttribute | undefined {
  const ordinal = ordinalOf(block, address);
  const index = ordinal === undefined ? null : block.allocations[ordinal];
  return index === null || index === undefined ? undefined : block.attributes[index];
}

/** Every allocated address with its attribute, in address order. */
export function allocatedAddresses(block: Block): { address: IpAddress; attribute: AllocationAttribute | undefined }[] {
  const out: { address: IpAddress; attribute: AllocationAttribute | undefined }[] = [];
  block.allocations.forEach((index, ordinal) => {
    if (index !== null) out.push({ address: addressAt(block.cidr, BigInt(ordinal)), attribute: block.attributes[index] });
  });
  return out;
}

/** Block sizes a pool may use, per IP version (Calico's ranges). */
export const BLOCK_SIZE_RANGE = { 4: { min: 20, max: 32, default: 26 }, 6: { min: 116, max: 128, default: 122 } } as const;
