import test from 'ava';
import { checkIpam } from '../../ctl/ipam-check';
import type { HandleRecord } from '../../shared/datastore';
import { parseCidr } from '../../shared/net';

const block = (cidr: string, affinity: string | null, allocated: [number, string][]) => {
  const size = 1 << (32 - Number(cidr.split('/')[1]));
  const allocations: (number | null)[] = new Array(size).fill(null);
  const attributes = allocated.map(([, handle]) => ({ handle_id: handle, secondary: { node: 'n1', timestamp: '2026-01-01T00:00:00Z' } }));
  allocated.forEach(([ordinal], i) => (allocations[ordinal] = i));
  return { cidr, affinity, strictAffinity: false, allocations, unallocated: allocations.flatMap((a, i) => (a === null ? [i] : [])), attributes, deleted: false };
};

test('ipam check - a consistent datastore has no problems', (t) => {
  const report = checkIpam({
    blocks: [block('10.0.0.0/30', 'host:n1', [[1, 'net.a']])],
    handles: new Map([['net.a', { block: { '10.0.0.0/30': 1 }, deleted: false }]]),
    endpoints: new Map([['default/ep', ['10.0.0.1/32']]]),
    pools: [parseCidr('10.0.0.0/24')],
    affinities: new Set(['n1/10.0.0.0/30']),
    now: new Date('2026-02-01T00:00:00Z'),
    graceSeconds: 0,
  });
  t.is(report.summary.problems, 0);
});

test('ipam check - each kind of problem is reported', (t) => {
  const report = checkIpam({
    blocks: [block('10.0.0.0/30', 'host:n1', [[1, 'net.a'], [2, 'net.b']]), block('192.168.0.0/30', 'host:n2', [[0, 'net.c']])],
    handles: new Map<string, HandleRecord>([
      ['net.a', { block: { '10.0.0.0/30': 1 }, deleted: false }],
      ['net.empty', { block: {}, deleted: false }],
    ]),
    endpoints: new Map([['default/ep', ['10.0.0.1/32', '10.0.0.3/32', '172.16.0.9/32']]]),
    pools: [parseCidr('10.0.0.0/24')],
    affinities: new Set(['n1/10.0.0.0/30', 'n3/192.168.0.0/30']),
    now: new Date('2026-02-01T00:00:00Z'),
    graceSeconds: 60,
  });
  t.deepEqual(report.allocatedWithoutEndpoint.map((l) => l.address), ['10.0.0.2', '192.168.0.0']);
  t.deepEqual(report.endpointAddressesNotAllocated, [{ endpoint: 'default/ep', address: '10.0.0.3' }], 'an address outside every pool (another IPAM\'s) is not judged');
  t.deepEqual(report.handlesWithoutAddresses, ['net.empty']);
  t.deepEqual(report.addressesOutsidePools, [{ address: '192.168.0.0', block: '192.168.0.0/30' }]);
  t.deepEqual(report.affinityMismatches.map((m) => m.problem), ['host n2 has no affinity record for it', 'the block says host:n2']);
  t.is(report.summary.problems, 7);
});

test('ipam check - young allocations get the grace period', (t) => {
  const report = checkIpam({
    blocks: [block('10.0.0.0/30', 'host:n1', [[1, 'net.a']])],
    handles: new Map([['net.a', { block: { '10.0.0.0/30': 1 }, deleted: false }]]),
    endpoints: new Map(),
    pools: [parseCidr('10.0.0.0/24')],
    affinities: new Set(['n1/10.0.0.0/30']),
    now: new Date('2026-01-01T00:00:30Z'),
    graceSeconds: 60,
  });
  t.is(report.allocatedWithoutEndpoint.length, 0);
});
