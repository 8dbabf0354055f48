import test from 'ava';
import { candidateIndexes, firstFreeIndex, randomBelow } from '../../shared/ipam/candidates';
import { addToHandle, removeFromHandle } from '../../shared/ipam/handle';
import { blockAt, blockCount, rejectOverlap, selectPools, validatePoolSpec, type Pool } from '../../shared/ipam/pool';
import { formatCidr, parseCidr } from '../../shared/net/cidr';

const pool = (name: string, cidr: string, extra: Partial<Pool> = {}): Pool => ({
  name, cidr: parseCidr(cidr), blockSize: parseCidr(cidr).version === 4 ? 26 : 122, disabled: false, key: `k/${name}`, modRevision: '1', ...extra,
});

test('pool - valid specs get Calico defaults', (t) => {
  t.deepEqual(validatePoolSpec('p4', { cidr: '10.1.0.0/16' }).spec, {
    cidr: '10.1.0.0/16', blockSize: 26, nodeSelector: 'all()', ipipMode: 'Never', vxlanMode: 'Never', natOutgoing: false,
  });
  t.is(validatePoolSpec('p6', { cidr: 'fd00:0:0::/48' }).spec.blockSize, 122);
  t.is(validatePoolSpec('p6', { cidr: 'fd00::/48' }).spec.cidr, 'fd00::/48');
});

test('pool - bad specs are refused with a reason', (t) => {
  const cases: [string, object, RegExp][] = [
    ['p', { cidr: '10.1.0.1/16' }, /not a network address \(did you mean 10\.1\.0\.0\/16\?\)/],
    ['p', { cidr: '10.1.0.0/16', blockSize: 19 }, /blockSize 19 is out of range for IPv4 \(20-32\)/],
    ['p', { cidr: 'fd00::/48', blockSize: 26 }, /out of range for IPv6 \(116-128\)/],
    ['p', { cidr: '10.1.0.0/28' }, /smaller than one block/],
    ['p', { cidr: '169.254.0.0/16' }, /link-local/],
    ['p', { cidr: '127.0.0.0/16' }, /loopback/],
    ['Bad_Name', { cidr: '10.1.0.0/16' }, /pool name/],
    ['p', { cidr: 'nonsense' }, /spec\.cidr/],
  ];
  for (const [name, spec, message] of cases) t.regex(t.throws(() => validatePoolSpec(name, spec as never))!.message, message);
});

test('pool - encapsulation as Calico checks it: known modes, not both at once, none on IPv6', (t) => {
  t.like(validatePoolSpec('v', { cidr: '10.1.0.0/16', vxlanMode: 'CrossSubnet' }).spec, { vxlanMode: 'CrossSubnet', ipipMode: 'Never' });
  t.like(validatePoolSpec('i', { cidr: '10.1.0.0/16', ipipMode: 'Always' }).spec, { ipipMode: 'Always', vxlanMode: 'Never' });
  const refusals: [object, RegExp][] = [
    [{ cidr: '10.1.0.0/16', vxlanMode: 'Sometimes' }, /spec\.vxlanMode "Sometimes" is not one of Never, Always, CrossSubnet/],
    [{ cidr: '10.1.0.0/16', ipipMode: 7 }, /spec\.ipipMode 7 is not one of/],
    [{ cidr: '10.1.0.0/16', ipipMode: 'Always', vxlanMode: 'CrossSubnet' }, /cannot both be enabled/],
    [{ cidr: 'fd00::/64', ipipMode: 'Always' }, /ipipMode must be Never for an IPv6 pool/],
    [{ cidr: 'fd00::/64', vxlanMode: 'Always' }, /vxlanMode must be Never for an IPv6 pool/],
  ];
  for (const [spec, reason] of refusals) t.throws(() => validatePoolSpec('p', spec as never), { message: reason });
});

test('pool - overlapping pools are refused, naming the other pool', (t) => {
  const existing = [pool('a', '10.1.0.0/16')];
  t.regex(t.throws(() => rejectOverlap('b', parseCidr('10.0.0.0/8'), existing))!.message, /overlaps pool a \(10\.1\.0\.0\/16\)/);
  t.notThrows(() => rejectOverlap('b', parseCidr('10.2.0.0/16'), existing));
  t.notThrows(() => rejectOverlap('a', parseCidr('10.1.0.0/16'), existing), 'a pool does not overlap itself');
});

test('pool - selection by version, name or CIDR, refusing missing and disabled pools', (t) => {
  const all = [pool('a', '10.1.0.0/16'), pool('b', '10.2.0.0/16', { disabled: true }), pool('c', 'fd00::/48')];
  t.deepEqual(selectPools(all, 4, undefined).map((p) => p.name), ['a']);
  t.deepEqual(selectPools(all, 6, []).map((p) => p.name), ['c']);
  t.deepEqual(selectPools(all, 4, ['10.1.0.0/16']).map((p) => p.name), ['a']);
  t.regex(t.throws(() => selectPools(all, 4, ['b']))!.message, /disabled/);
  t.regex(t.throws(() => selectPools(all, 4, ['c']))!.message, /does not exist/);
});

test('pool - block arithmetic', (t) => {
  const p = pool('a', '10.1.0.0/16');
  t.is(blockCount(p), 1024n);
  t.is(formatCidr(blockAt(p, 0n)), '10.1.0.0/26');
  t.is(formatCidr(blockAt(p, 1023n)), '10.1.255.192/26');
  t.is(blockCount(pool('v6', 'fd00::/64')), 1n << 58n);
});

test('candidates - distinct, in range, all of a small pool', (t) => {
  const small = candidateIndexes(5n, 16);
  t.deepEqual([...small].sort(), [0n, 1n, 2n, 3n, 4n]);
  const big = candidateIndexes(1n << 58n, 16);
  t.is(new Set(big).size, 16);
  for (const i of big) t.true(i >= 0n && i < 1n << 58n);
  for (let i = 0; i < 200; i++) t.true(randomBelow(3n) < 3n);
  t.is(firstFreeIndex(4n, new Set([1n, 2n]), 1n), 3n);
  t.is(firstFreeIndex(4n, new Set([1n, 2n, 3n]), 1n), 0n);
  t.is(firstFreeIndex(2n, new Set([0n, 1n]), 0n), undefined);
});

test('handles - counts per block, deleted when empty', (t) => {
  const h = addToHandle(addToHandle(undefined, '10.0.0.0/26', 2), '10.0.0.64/26', 1);
  t.deepEqual(h.block, { '10.0.0.0/26': 2, '10.0.0.64/26': 1 });
  const less = removeFromHandle(h, '10.0.0.0/26', 2)!;
  t.deepEqual(less.block, { '10.0.0.64/26': 1 });
  t.is(removeFromHandle(less, '10.0.0.64/26', 1), undefined);
});
