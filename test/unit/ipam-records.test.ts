import test from 'ava';
import { decodeAffinity, decodeBlock, decodeHandle, decodeIpamConfig, encodeBlock } from '../../shared/datastore/ipam-records';
import { parseCidr } from '../../shared/net/cidr';

const KEY = '/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-30';
const good = { cidr: '10.0.0.0/30', affinity: 'host:n1', allocations: [0, null, null, null], unallocated: [1, 2, 3], attributes: [{ handle_id: 'h', secondary: { node: 'n1' } }], deleted: false };

test('records - a Calico block decodes and re-encodes unchanged', (t) => {
  const block = decodeBlock(KEY, JSON.stringify(good), parseCidr('10.0.0.0/30'));
  t.is(block.affinity, 'host:n1');
  t.deepEqual(JSON.parse(encodeBlock(block)), { ...good, strictAffinity: false });
});

test('records - inconsistent or malformed blocks are refused, naming the key', (t) => {
  const cases: [object | string, RegExp][] = [
    ['{', /not JSON/],
    [{ ...good, allocations: [0, null, null] }, /allocations has 3 entries/],
    [{ ...good, allocations: [5, null, null, null] }, /allocations\[0\] must be null or an index/],
    [{ ...good, unallocated: [1, 2] }, /disagree/],
    [{ ...good, unallocated: [0, 1, 2, 3] }, /disagree|must be/],
    [{ ...good, unallocated: [1, 1, 3] }, /disagree/],
    [{ ...good, unallocated: [1, 2, 9] }, /unallocated\[2\]/],
    [{ ...good, cidr: '10.0.0.1/30' }, /not a network CIDR/],
    [{ ...good, cidr: '10.0.0.4/30' }, /the key says 10\.0\.0\.0\/30/],
    [{ ...good, attributes: 'x' }, /"attributes" must be an array/],
    [{ ...good, attributes: [{ handle_id: 3 }] }, /attributes\[0\]\.handle_id/],
    [{ ...good, cidr: '10.0.0.0/8', allocations: [], unallocated: [] }, /larger than any allowed block/],
  ];
  for (const [value, message] of cases) {
    const expected = typeof value === 'object' && (value as { cidr: string }).cidr.endsWith('/8') ? undefined : parseCidr('10.0.0.0/30');
    const err = t.throws(() => decodeBlock(KEY, typeof value === 'string' ? value : JSON.stringify(value), expected));
    t.true(err!.message.includes(KEY), err!.message);
    t.regex(err!.message, message);
  }
});

test('records - affinities, handles and config decode with defaults and checks', (t) => {
  t.deepEqual(decodeAffinity('k', '{"state":"pending"}'), { state: 'pending', deleted: false });
  t.regex(t.throws(() => decodeAffinity('k', '{"state":"maybe"}'))!.message, /state/);
  t.deepEqual(decodeHandle('k', '{"block":{"10.0.0.0/26":2}}'), { block: { '10.0.0.0/26': 2 }, deleted: false });
  t.regex(t.throws(() => decodeHandle('k', '{"block":{"10.0.0.0/26":-1}}'))!.message, /count/);
  t.deepEqual(decodeIpamConfig('k', '{}'), { strict_affinity: false, auto_allocate_blocks: true, maxBlocksPerHost: 0 });
  t.regex(t.throws(() => decodeIpamConfig('k', '{"strict_affinity":"yes"}'))!.message, /strict_affinity/);
});
