import test from 'ava';
import { IpamChecker } from '../../ctl/ipam-check';
import { parseCidr } from '../../shared/net';

const block = (cidr: string, affinity: string | null, allocated: [number, string, string?][]) => {
  const size = 1 << (32 - Number(cidr.split('/')[1]));
  const allocations: (number | null)[] = new Array(size).fill(null);
  const attributes = allocated.map(([, handle, node]) => ({ handle_id: handle, secondary: { node: node ?? 'n1', timestamp: '2026-01-01T00:00:00Z' } }));
  allocated.forEach(([ordinal], i) => (allocations[ordinal] = i));
  return { cidr, affinity, strictAffinity: false, allocations, unallocated: allocations.flatMap((a, i) => (a === null ? [i] : [])), attributes, deleted: false };
};
const pools = [parseCidr('10.0.0.0/24')];
const later = new Date('2026-02-01T00:00:00Z');

test('ipam check - a consistent datastore has no problems', (t) => {
  const checker = new IpamChecker(pools, later, 0);
  checker.checkHost('n1', [block('10.0.0.0/30', 'host:n1', [[1, 'net.a']])], [{ name: 'default/ep', addresses: ['10.0.0.1/32'] }]);
  checker.checkHandle('net.a', { block: { '10.0.0.0/30': 1 }, deleted: false });
  t.is(checker.finish().summary.problems, 0);
});

test('ipam check - each kind of problem is reported', (t) => {
  const checker = new IpamChecker(pools, later, 60);
  checker.checkHost('n1', [block('10.0.0.0/30', 'host:n1', [[1, 'net.a'], [2, 'net.b']])], [{ name: 'default/ep', addresses: ['10.0.0.1/32', '10.0.0.3/32', '172.16.0.9/32'] }]);
  // n3 holds an affinity for a block that says n2.
  checker.checkHost('n3', [block('192.168.0.0/30', 'host:n2', [[0, 'net.c', 'n2']])], []);
  t.true(checker.hasChecked('192.168.0.0/30'));
  checker.checkUnclaimedBlock(block('10.0.0.8/30', 'host:n4', []));
  for (const owner of checker.ownersToSettle()) checker.settleBorrowed(owner, []);
  checker.checkHandle('net.a', { block: { '10.0.0.0/30': 1 }, deleted: false });
  checker.checkHandle('net.empty', { block: {}, deleted: false });
  const report = checker.finish();
  t.deepEqual(report.allocatedWithoutEndpoint.map((l) => l.address), ['10.0.0.2', '192.168.0.0']);
  t.deepEqual(report.endpointAddressesNotAllocated, [{ endpoint: 'default/ep', address: '10.0.0.3' }], 'an address outside every pool (another IPAM\'s) is not judged');
  t.deepEqual(report.handlesWithoutAddresses, ['net.empty']);
  t.deepEqual(report.addressesOutsidePools, [{ address: '192.168.0.0', block: '192.168.0.0/30' }]);
  t.deepEqual(report.affinityMismatches.map((m) => m.problem), ['the block says host:n2', 'host n4 has no affinity record for it']);
  t.is(report.summary.problems, 7);
});

test('ipam check - an address borrowed from another host\'s block is matched against its owner\'s endpoints', (t) => {
  const checker = new IpamChecker(pools, later, 0);
  checker.checkHost('lender', [block('10.0.0.0/30', 'host:lender', [[1, 'net.borrowed', 'borrower'], [2, 'net.gone', 'borrower']])], []);
  checker.checkHost('borrower', [], [{ name: 'default/b', addresses: ['10.0.0.1/32', '10.0.0.9/32'] }]);
  t.deepEqual(checker.ownersToSettle(), ['borrower']);
  checker.settleBorrowed('borrower', [{ name: 'default/b', addresses: ['10.0.0.1/32'] }]);
  t.deepEqual(checker.addressesToSettle().map((a) => a.value), [parseCidr('10.0.0.1/32').network, parseCidr('10.0.0.9/32').network], 'the borrower\'s addresses lie in no block of its own');
  checker.settleElsewhere(new Set(['10.0.0.1']));
  const report = checker.finish();
  t.deepEqual(report.allocatedWithoutEndpoint.map((l) => l.address), ['10.0.0.2']);
  t.deepEqual(report.endpointAddressesNotAllocated, [{ endpoint: 'default/b', address: '10.0.0.9' }]);
});

test('ipam check - young allocations get the grace period', (t) => {
  const checker = new IpamChecker(pools, new Date('2026-01-01T00:00:30Z'), 60);
  checker.checkHost('n1', [block('10.0.0.0/30', 'host:n1', [[1, 'net.a']])], []);
  t.is(checker.finish().allocatedWithoutEndpoint.length, 0);
});
