/**
 * Allocation blocks as pure values. Every mutation returns a new block and touches nothing else,
 * so the allocator can run it inside a compare-and-swap loop and the rules are unit tested alone.
 * The layout mirrors Calico's allocationBlock: `allocations[ordinal]` is null (free) or an index
 * into `attributes`; `unallocated` lists free ordinals, taken from the front, returned to the back.
 */
import type { AllocationAttributeRecord, BlockRecord } from '../datastore/ipam-records';
import { formatAddress, type IpAddress } from '../net/address';
import { addressAt, cidrContains, cidrSize, type Cidr } from '../net/cidr';
import { AddressInUseError, AddressReservedError } from './errors';

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

/** Ordinals never handed out (a pool's network and broadcast addresses): free, but not assignable. */
export type Reserved = ReadonlySet<number>;
const NONE: Reserved = new Set();

/** How many addresses auto-assignment can still take from the block. */
export function assignableCount(block: Block, reserved: Reserved = NONE): number {
  let count = block.unallocated.length;
  for (const ordinal of reserved) if (block.allocations[ordinal] === null) count--;
  return count;
}

/** Takes up to `count` free addresses from the front of the free list, never a reserved one. */
export function autoAssign(block: Block, count: number, attribute: AllocationAttribute, reserved: Reserved = NONE): { block: Block; addresses: IpAddress[] } {
  const taken: number[] = [];
  for (const ordinal of block.unallocated) {
    if (taken.length >= count) break;
    if (!reserved.has(ordinal)) taken.push(ordinal);
  }
  if (taken.length === 0) return { block, addresses: [] };
  const { attributes, index } = withAttribute(block.attributes, attribute);
  const allocations = block.allocations.slice();
  for (const ordinal of taken) allocations[ordinal] = index;
  const takenSet = new Set(taken);
  return {
    block: { ...block, allocations, attributes, unallocated: block.unallocated.filter((o) => !takenSet.has(o)) },
    addresses: taken.map((ordinal) => addressAt(block.cidr, BigInt(ordinal))),
  };
}

/** Allocates exactly `address`; throws AddressInUseError when it is taken, RangeError when reserved. */
export function assignAddress(block: Block, address: IpAddress, attribute: AllocationAttribute, reserved: Reserved = NONE): Block {
  const ordinal = ordinalOf(block, address);
  if (ordinal === undefined) throw new RangeError(`${formatAddress(address)} is not in this block`);
  if (reserved.has(ordinal)) throw new AddressReservedError(formatAddress(address));
  const current = block.allocations[ordinal];
  if (current !== null && current !== undefined) {
    throw new AddressInUseError(formatAddress(address), block.attributes[current]?.handle_id ?? null);
  }
  const { attributes, index } = withAttribute(block.attributes, attribute);
  const allocations = block.allocations.slice();
  allocations[ordinal] = index;
  return { ...block, allocations, attributes, unallocated: block.unallocated.filter((o) => o !== ordinal) };
}

/** Whether an allocation belongs to the one asking for its release. */
export type OwnerTest = (attribute: AllocationAttribute) => boolean;

export const anyOwner: OwnerTest = () => true;

export function ownedBy(handle: HandleId): OwnerTest {
  return (attribute) => attribute.handle_id === handle;
}

export interface Release {
  readonly block: Block;
  /** How many addresses each handle lost, to keep the handle records in step. */
  readonly releasedByHandle: ReadonlyMap<HandleId, number>;
  readonly released: readonly IpAddress[];
  /** Addresses of the request that were not allocated (or not in this block): nothing to do. */
  readonly notAllocated: readonly IpAddress[];
  /** Addresses allocated to someone else: left alone. */
  readonly notOwned: readonly IpAddress[];
}

function releaseOrdinals(block: Block, ordinals: readonly number[]): Omit<Release, 'notAllocated' | 'notOwned'> {
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
  };
}

/**
 * Frees the given addresses that `owns` accepts; those not allocated (or not in the block) and
 * those of another owner are reported, not errors.
 */
export function releaseAddresses(block: Block, addresses: readonly IpAddress[], owns: OwnerTest = anyOwner): Release {
  const ordinals: number[] = [];
  const notAllocated: IpAddress[] = [];
  const notOwned: IpAddress[] = [];
  for (const address of addresses) {
    const attribute = attributeOf(block, address);
    if (!attribute) notAllocated.push(address);
    else if (!owns(attribute)) notOwned.push(address);
    else ordinals.push(ordinalOf(block, address)!);
  }
  return { ...releaseOrdinals(block, ordinals), notAllocated, notOwned };
}

export function ordinalsOfHandle(block: Block, handle: HandleId): number[] {
  const ordinals: number[] = [];
  block.allocations.forEach((index, ordinal) => {
    if (index !== null && block.attributes[index]?.handle_id === handle) ordinals.push(ordinal);
  });
  return ordinals;
}

/** Frees the handle's addresses in the block (those `owns` accepts: a legacy handle may be shared). */
export function releaseHandle(block: Block, handle: HandleId, owns: OwnerTest = anyOwner): Release {
  const ordinals = ordinalsOfHandle(block, handle).filter((o) => owns(block.attributes[block.allocations[o]!]!));
  return { ...releaseOrdinals(block, ordinals), notAllocated: [], notOwned: [] };
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
