/**
 * Group commit, the pure part: many concurrent requests for addresses placed into a host's blocks
 * at once, so one transaction serves them all. Blocks are filled in the order given (the host's
 * fullest first would do as well; order only has to be stable), each request gets all of what it
 * asks for or nothing, and a plan never touches more blocks than one etcd transaction can carry.
 */
import { formatCidr } from '../net/cidr';
import type { GuardedPut } from '../datastore';
import type { IpAddress, IpVersion } from '../net/address';
import { assignableCount, autoAssign, type AllocationAttribute, type Block, type Reserved } from './block';

/**
 * Another record written in the allocation's own transaction (a workload's endpoint), made from
 * the addresses the allocation got: both land or neither. When its key does not hold what it
 * expects, the allocation goes ahead without it and says so; its caller writes it apart.
 */
export type Companion = (addresses: readonly IpAddress[]) => GuardedPut;

export interface Demand {
  /** Addresses wanted of each IP version. */
  readonly count: Readonly<Record<IpVersion, number>>;
  readonly attribute: AllocationAttribute;
  /** Not the planner's concern: the assigner writes it with the plan. */
  readonly companion?: Companion;
}

export interface Candidate {
  readonly block: Block;
  /** Ordinals of this block never handed out (see pool.reservedOrdinals). */
  readonly reserved: Reserved;
}

export interface Plan {
  /** Demand index -> its addresses (IPv4 first), for every demand placed. */
  readonly placed: ReadonlyMap<number, IpAddress[]>;
  /** The blocks the plan changed, as they are after it, by CIDR. */
  readonly blocks: ReadonlyMap<string, Block>;
  /** Demands the candidates cannot satisfy: more blocks are needed. */
  readonly short: readonly number[];
  /** The IP versions whose blocks ran out for some demand. */
  readonly shortVersions: readonly IpVersion[];
  /** Demands left for another transaction, because placing them would touch more than `maxBlocks` blocks. */
  readonly deferred: readonly number[];
}

interface Slot {
  readonly key: string;
  block: Block;
  readonly reserved: Reserved;
  free: number;
}

export function planAssignments(demands: readonly Demand[], candidates: Readonly<Record<IpVersion, readonly Candidate[]>>, maxBlocks: number): Plan {
  const slots: Record<IpVersion, Slot[]> = { 4: toSlots(candidates[4]), 6: toSlots(candidates[6]) };
  const placed = new Map<number, IpAddress[]>();
  const touched = new Set<string>();
  const short: number[] = [];
  const shortVersions = new Set<IpVersion>();
  const deferred: number[] = [];

  demands.forEach((demand, index) => {
    if (deferred.length > 0) return void deferred.push(index);
    const takes = ([4, 6] as const).map((version) => ({ version, takes: takesFor(slots[version], demand.count[version]) }));
    const lacking = takes.filter((t) => t.takes === undefined);
    if (lacking.length > 0) {
      for (const { version } of lacking) shortVersions.add(version);
      return void short.push(index);
    }
    const needs = new Set([...touched, ...takes.flatMap((t) => t.takes!.map(([slot]) => slot.key))]);
    if (needs.size > maxBlocks) return void deferred.push(index);

    const addresses: IpAddress[] = [];
    for (const { takes: list } of takes) {
      for (const [slot, n] of list!) {
        const result = autoAssign(slot.block, n, demand.attribute, slot.reserved);
        slot.block = result.block;
        slot.free -= result.addresses.length;
        touched.add(slot.key);
        addresses.push(...result.addresses);
      }
    }
    placed.set(index, addresses);
  });

  const blocks = new Map<string, Block>();
  for (const slot of [...slots[4], ...slots[6]]) if (touched.has(slot.key)) blocks.set(slot.key, slot.block);
  return { placed, blocks, short, shortVersions: [...shortVersions], deferred };
}

function toSlots(candidates: readonly Candidate[]): Slot[] {
  return candidates.map(({ block, reserved }) => ({ key: formatCidr(block.cidr), block, reserved, free: assignableCount(block, reserved) }));
}

/** How many to take from which blocks for `count` addresses, or undefined when they do not suffice. */
function takesFor(slots: readonly Slot[], count: number): [Slot, number][] | undefined {
  const takes: [Slot, number][] = [];
  let left = count;
  for (const slot of slots) {
    if (left === 0) break;
    const n = Math.min(left, slot.free);
    if (n > 0) takes.push([slot, n]);
    left -= n;
  }
  return left === 0 ? takes : undefined;
}
