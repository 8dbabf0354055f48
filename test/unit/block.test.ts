import test from 'ava';
import { formatAddress, parseAddress } from '../../shared/net/address';
import { parseCidr } from '../../shared/net/cidr';
import {
  allocatedAddresses,
  annotateAddress,
  assignAddress,
  attributeOf,
  autoAssign,
  inUseCount,
  isEmpty,
  newBlock,
  releaseAddresses,
  releaseHandle,
  type Block,
} from '../../shared/ipam/block';
import { AddressInUseError } from '../../shared/ipam/errors';

const attr = (handle: string, extra: Record<string, string> = {}) => ({ handle_id: handle, secondary: { node: 'n1', ...extra } });
const texts = (addresses: { version: 4 | 6; value: bigint }[]) => addresses.map(formatAddress);

/** The invariants every block must keep after any operation. */
function assertConsistent(t: import('ava').ExecutionContext, block: Block) {
  const free = block.allocations.flatMap((a, i) => (a === null ? [i] : []));
  t.deepEqual([...block.unallocated].sort((a, b) => a - b), free, 'unallocated lists exactly the free ordinals');
  t.is(new Set(block.unallocated).size, block.unallocated.length, 'no ordinal is free twice');
  const used = new Set(block.allocations.filter((a) => a !== null));
  t.is(used.size, block.attributes.length, 'every attribute is referenced, none dangling');
  for (const index of used) t.true(index! < block.attributes.length);
}

test('block - a new block is empty, affine to its host, all free', (t) => {
  const block = newBlock(parseCidr('10.0.0.0/26'), 'n1');
  t.is(block.affinity, 'host:n1');
  t.is(block.allocations.length, 64);
  t.true(isEmpty(block));
  t.is(inUseCount(block), 0);
  assertConsistent(t, block);
});

test('block - auto-assign takes from the front, shares one attribute per owner', (t) => {
  const { block, addresses } = autoAssign(newBlock(parseCidr('10.0.0.0/26'), 'n1'), 3, attr('h1'));
  t.deepEqual(texts(addresses), ['10.0.0.0', '10.0.0.1', '10.0.0.2']);
  t.is(block.attributes.length, 1);
  t.is(inUseCount(block), 3);
  const second = autoAssign(block, 1, attr('h2'));
  t.deepEqual(texts(second.addresses), ['10.0.0.3']);
  t.is(second.block.attributes.length, 2);
  t.is(attributeOf(second.block, parseAddress('10.0.0.3'))?.handle_id, 'h2');
  assertConsistent(t, second.block);
});

test('block - auto-assign from a nearly full block returns what is left, a full one nothing', (t) => {
  const full = autoAssign(newBlock(parseCidr('10.0.0.0/30'), 'n1'), 3, attr('a')).block;
  const partial = autoAssign(full, 5, attr('b'));
  t.deepEqual(texts(partial.addresses), ['10.0.0.3']);
  const none = autoAssign(partial.block, 1, attr('c'));
  t.deepEqual(none.addresses, []);
  t.is(none.block, partial.block);
  assertConsistent(t, partial.block);
});

test('block - assigning a given address, and refusing one in use or outside', (t) => {
  const block = assignAddress(newBlock(parseCidr('10.0.0.0/26'), 'n1'), parseAddress('10.0.0.9'), attr('h1'));
  t.is(attributeOf(block, parseAddress('10.0.0.9'))?.handle_id, 'h1');
  t.false(block.unallocated.includes(9));
  const err = t.throws(() => assignAddress(block, parseAddress('10.0.0.9'), attr('h2')), { instanceOf: AddressInUseError });
  t.regex(err!.message, /10\.0\.0\.9 is already in use \(handle "h1"\)/);
  t.throws(() => assignAddress(block, parseAddress('10.0.1.9'), attr('h2')), { instanceOf: RangeError });
  assertConsistent(t, block);
});

test('block - release frees addresses, returns them to the back, counts per handle', (t) => {
  let block = autoAssign(newBlock(parseCidr('10.0.0.0/29'), 'n1'), 2, attr('h1')).block;
  block = autoAssign(block, 2, attr('h2')).block;
  const release = releaseAddresses(block, [parseAddress('10.0.0.0'), parseAddress('10.0.0.3')]);
  t.deepEqual(Object.fromEntries(release.releasedByHandle), { h1: 1, h2: 1 });
  t.deepEqual(release.block.unallocated, [4, 5, 6, 7, 0, 3]);
  t.deepEqual(release.notAllocated, []);
  assertConsistent(t, release.block);
});

test('block - releasing unknown or foreign addresses is reported, not an error', (t) => {
  const block = autoAssign(newBlock(parseCidr('10.0.0.0/29'), 'n1'), 1, attr('h1')).block;
  const release = releaseAddresses(block, [parseAddress('10.0.0.5'), parseAddress('192.168.0.1'), parseAddress('fd00::1')]);
  t.deepEqual(texts([...release.notAllocated]), ['10.0.0.5', '192.168.0.1', 'fd00::1']);
  t.is(release.releasedByHandle.size, 0);
  t.deepEqual(release.block.allocations, block.allocations);
});

test('block - double release frees once', (t) => {
  const block = autoAssign(newBlock(parseCidr('10.0.0.0/29'), 'n1'), 1, attr('h1')).block;
  const once = releaseAddresses(block, [parseAddress('10.0.0.0'), parseAddress('10.0.0.0')]);
  t.is(once.released.length, 1);
  const twice = releaseAddresses(once.block, [parseAddress('10.0.0.0')]);
  t.is(twice.released.length, 0);
  t.is(twice.notAllocated.length, 1);
  assertConsistent(t, twice.block);
});

test('block - release by handle frees only that handle and compacts attributes', (t) => {
  let block = autoAssign(newBlock(parseCidr('10.0.0.0/28'), 'n1'), 2, attr('h1')).block;
  block = autoAssign(block, 3, attr('h2')).block;
  block = autoAssign(block, 1, attr('h3')).block;
  const release = releaseHandle(block, 'h2');
  t.is(release.released.length, 3);
  t.deepEqual(Object.fromEntries(release.releasedByHandle), { h2: 3 });
  t.deepEqual(release.block.attributes.map((a) => a.handle_id), ['h1', 'h3']);
  t.is(attributeOf(release.block, parseAddress('10.0.0.5'))?.handle_id, 'h3');
  t.deepEqual(allocatedAddresses(release.block).map((a) => [formatAddress(a.address), a.attribute?.handle_id]), [
    ['10.0.0.0', 'h1'],
    ['10.0.0.1', 'h1'],
    ['10.0.0.5', 'h3'],
  ]);
  assertConsistent(t, release.block);
  t.is(releaseHandle(release.block, 'nobody').released.length, 0);
});

test('block - IPv6 blocks allocate, assign and release the same way', (t) => {
  const { block, addresses } = autoAssign(newBlock(parseCidr('fd00:1::/122'), 'n1'), 2, attr('h1'));
  t.deepEqual(texts(addresses), ['fd00:1::', 'fd00:1::1']);
  const assigned = assignAddress(block, parseAddress('fd00:1::3f'), attr('h2'));
  t.throws(() => assignAddress(assigned, parseAddress('fd00:1::40'), attr('h2')), { instanceOf: RangeError });
  const release = releaseHandle(assigned, 'h1');
  t.is(release.released.length, 2);
  t.is(inUseCount(release.block), 1);
  assertConsistent(t, release.block);
});

test('block - a full block fills every ordinal exactly once', (t) => {
  let block = newBlock(parseCidr('10.0.0.0/26'), 'n1');
  const seen = new Set<string>();
  for (let i = 0; i < 70; i++) {
    const r = autoAssign(block, 1, attr(`h${i % 7}`));
    block = r.block;
    for (const a of r.addresses) seen.add(formatAddress(a));
  }
  t.is(seen.size, 64);
  t.is(block.unallocated.length, 0);
  t.is(block.attributes.length, 7);
  assertConsistent(t, block);
  const emptied = [0, 1, 2, 3, 4, 5, 6].reduce((b, i) => releaseHandle(b, `h${i}`).block, block);
  t.true(isEmpty(emptied));
  t.is(emptied.attributes.length, 0);
});

test('block - identical owners share an attribute, different facts do not', (t) => {
  let block = autoAssign(newBlock(parseCidr('10.0.0.0/29'), 'n1'), 1, attr('h1', { ifname: 'eth0' })).block;
  block = autoAssign(block, 1, attr('h1', { ifname: 'eth0' })).block;
  t.is(block.attributes.length, 1);
  block = autoAssign(block, 1, attr('h1', { ifname: 'eth1' })).block;
  t.is(block.attributes.length, 2);
  block = autoAssign(block, 1, { handle_id: null, secondary: null }).block;
  t.is(block.attributes.length, 3);
  assertConsistent(t, block);
});

test('block - annotating one address splits it from a shared attribute', (t) => {
  const block = autoAssign(newBlock(parseCidr('10.0.0.0/29'), 'n1'), 2, attr('h1')).block;
  const annotated = annotateAddress(block, parseAddress('10.0.0.1'), { endpoint: 'ep1' });
  t.deepEqual(attributeOf(annotated, parseAddress('10.0.0.1'))?.secondary, { node: 'n1', endpoint: 'ep1' });
  t.deepEqual(attributeOf(annotated, parseAddress('10.0.0.0'))?.secondary, { node: 'n1' });
  t.is(attributeOf(annotated, parseAddress('10.0.0.1'))?.handle_id, 'h1');
  assertConsistent(t, annotated);
  const again = annotateAddress(annotated, parseAddress('10.0.0.0'), { endpoint: 'ep1' });
  t.is(again.attributes.length, 1, 'identical owners share one attribute again');
  assertConsistent(t, again);
  t.throws(() => annotateAddress(block, parseAddress('10.0.0.5'), {}), { instanceOf: RangeError });
});
