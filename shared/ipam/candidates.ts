/**
 * Which block CIDRs of a pool to try when claiming a new block. Random picks find a free block in
 * one round trip however many blocks the cluster has (the bench's claim_ratio), where walking the
 * pool from its start would read every claimed block first; a nearly full pool falls back to one
 * keys-only listing of the existing blocks.
 */

/** Up to `count` distinct indexes below `total`, in random order (all of them when total <= count). */
export function candidateIndexes(total: bigint, count: number, random: () => number = Math.random): bigint[] {
  if (total <= BigInt(count)) {
    const all = Array.from({ length: Number(total) }, (_, i) => BigInt(i));
    for (let i = all.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [all[i], all[j]] = [all[j]!, all[i]!];
    }
    return all;
  }
  const picked = new Set<bigint>();
  while (picked.size < count) picked.add(randomBelow(total, random));
  return [...picked];
}

/** A uniform-enough random bigint below `total` (total may exceed 2^53 for IPv6 pools). */
export function randomBelow(total: bigint, random: () => number = Math.random): bigint {
  let value = 0n;
  for (let bits = 0n; 1n << bits < total; bits += 30n) value = (value << 30n) | BigInt(Math.floor(random() * 2 ** 30));
  return value % total;
}

/** The first index at or after `start` (wrapping) that is not taken, or undefined if all are. */
export function firstFreeIndex(total: bigint, taken: ReadonlySet<bigint>, start: bigint): bigint | undefined {
  if (BigInt(taken.size) >= total) return undefined;
  for (let i = 0n; i < total; i++) {
    const index = (start + i) % total;
    if (!taken.has(index)) return index;
  }
  return undefined;
}
