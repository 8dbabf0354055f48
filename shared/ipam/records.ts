/** Conversion between the stored block record and the pure Block, and versioned reads of both. */
import { decodeBlock, decodeHandle, type BlockRecord, type Entry, type HandleRecord } from '../datastore';
import { formatCidr, parseCidr, type Cidr } from '../net/cidr';
import type { Block } from './block';

/** A value together with the etcd revision it was read at. */
export interface Versioned<T> {
  readonly value: T;
  readonly modRevision: string;
}

export function blockFromRecord(record: BlockRecord): Block {
  const { deleted: _deleted, ...rest } = record;
  return { ...rest, cidr: parseCidr(record.cidr) };
}

export function recordFromBlock(block: Block): BlockRecord {
  return { ...block, cidr: formatCidr(block.cidr), deleted: false };
}

export function blockFromEntry(entry: Entry, expected?: Cidr): Versioned<Block> {
  return { value: blockFromRecord(decodeBlock(entry.key, entry.value, expected)), modRevision: entry.modRevision };
}

export function handleFromEntry(entry: Entry): Versioned<HandleRecord> {
  return { value: decodeHandle(entry.key, entry.value), modRevision: entry.modRevision };
}
