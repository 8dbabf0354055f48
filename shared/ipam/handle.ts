/** Handle records as pure values: how many addresses of one owner each block holds. */
import type { HandleRecord } from '../datastore';

export function addToHandle(handle: HandleRecord | undefined, blockCidr: string, count: number): HandleRecord {
  const block = { ...(handle?.block ?? {}) };
  block[blockCidr] = (block[blockCidr] ?? 0) + count;
  return { block, deleted: false };
}

/** Returns undefined when the handle holds nothing any more (its key is then deleted). */
export function removeFromHandle(handle: HandleRecord, blockCidr: string, count: number): HandleRecord | undefined {
  const block = { ...handle.block };
  const left = (block[blockCidr] ?? 0) - count;
  if (left > 0) block[blockCidr] = left;
  else delete block[blockCidr];
  return Object.keys(block).length === 0 ? undefined : { block, deleted: false };
}

/**
 * Handle IDs become etcd key segments: no "/", no control characters, bounded length (our CNI
 * handles name a host, a network, a container and an interface: up to about 650 characters).
 */
export function isValidHandleId(id: unknown): id is string {
  return typeof id === 'string' && /^[^/\s\x00-\x1f]{1,1024}$/.test(id);
}
