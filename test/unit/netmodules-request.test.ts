import test from 'ava';
import { formatAddress } from '../../shared/net';
import { parseRequest, type NetmodulesRequest } from '../../netmodules/request';

const wire = (command: string, args: Record<string, unknown>) => JSON.stringify({ command, args });

test('netmodules request - the isolator\'s real wire JSON parses into typed requests', (t) => {
  const allocate = parseRequest('{"args":{"hostname":"172.17.0.7","netgroups":["netgroup_a"],"num_ipv4":1,"num_ipv6":0,"uid":"590c6952-dd95-4d28-8da9-492b65b849ec"},"command":"allocate"}');
  t.like(allocate, { command: 'allocate', hostname: '172.17.0.7', netgroups: ['netgroup_a'], num4: 1, num6: 0, uid: '590c6952-dd95-4d28-8da9-492b65b849ec', static4: [] });
  const isolate = parseRequest('{"args":{"container_id":"2f173958-1234","hostname":"172.24.193.149","ipv4_addrs":["192.168.9.0"],"netgroups":["netgroup_a"],"pid":90},"command":"isolate"}');
  t.like(isolate, { command: 'isolate', containerId: '2f173958-1234', pid: 90, netgroups: ['netgroup_a'], labels: [] });
  t.deepEqual((isolate as Extract<NetmodulesRequest, { command: 'isolate' }>).addresses.map(formatAddress), ['192.168.9.0']);
  t.like(parseRequest('{"args":{"container_id":"244a3750-x","hostname":"dl-agent2.c.internal"},"command":"cleanup"}'), { command: 'cleanup', containerId: '244a3750-x' });
  t.like(parseRequest(wire('release', { ips: ['10.0.0.1', 'fd00::1'] })), { command: 'release' });
  t.like(parseRequest(wire('release', { uid: 'u1' })), { command: 'release', by: { uid: 'u1' } });
  t.like(parseRequest(wire('reserve', { hostname: '', uid: 'u1', ipv4_addrs: ['10.0.0.9'] })), { command: 'reserve', uid: 'u1' });
});

test('netmodules request - numbers as numbers or numeric strings; labels as mesos.Label; ipv4_addrs label read as JSON only', (t) => {
  t.like(parseRequest(wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: '2', num_ipv6: '0' })), { num4: 2, num6: 0 });
  t.like(parseRequest(wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: 1 })), { num6: 0 }, 'num_ipv6 defaults to 0');
  t.like(parseRequest(wire('isolate', { hostname: 'h', container_id: 'c', pid: '1234', ipv4_addrs: ['10.0.0.1'] })), { pid: 1234 });
  const labelled = parseRequest(wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: 2, labels: [{ key: 'app', value: 'web' }, { key: 'bare' }, { key: 'ipv4_addrs', value: '["10.0.0.5"]' }] }));
  t.deepEqual((labelled as Extract<NetmodulesRequest, { command: 'allocate' }>).labels, [{ key: 'app', value: 'web' }, { key: 'bare', value: '' }, { key: 'ipv4_addrs', value: '["10.0.0.5"]' }]);
  t.deepEqual((labelled as Extract<NetmodulesRequest, { command: 'allocate' }>).static4.map(formatAddress), ['10.0.0.5']);
});

const refusals: [string, string, RegExp][] = [
  ['invalid JSON', '{"command": "allocate", ', /^invalid request: is not JSON/],
  ['not an object', '[1, 2]', /^invalid request: must be a JSON object/],
  ['missing command', '{"args": {}}', /^invalid command: is missing \(one of allocate, reserve, release, isolate, cleanup\)/],
  ['unknown command', wire('frob', {}), /^invalid command: "frob" is not one of allocate/],
  ['missing args', '{"command": "allocate"}', /^invalid args: is missing/],
  ['missing uid', wire('allocate', { hostname: 'h', num_ipv4: 1 }), /^invalid uid: is missing/],
  ['missing hostname', wire('allocate', { uid: 'u', num_ipv4: 1 }), /^invalid hostname: is missing/],
  ['missing container_id', wire('isolate', { hostname: 'h', pid: 1, ipv4_addrs: ['10.0.0.1'] }), /^invalid container_id: is missing/],
  ['missing pid', wire('isolate', { hostname: 'h', container_id: 'c', ipv4_addrs: ['10.0.0.1'] }), /^invalid pid: is missing/],
  ['pid 0', wire('isolate', { hostname: 'h', container_id: 'c', pid: 0, ipv4_addrs: ['10.0.0.1'] }), /^invalid pid: must be a whole number from 1 to 4194304, not 0/],
  ['num_ipv4 "abc"', wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: 'abc' }), /^invalid num_ipv4: must be a whole number from 0 to 256, not "abc"/],
  ['num_ipv4 -1', wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: -1 }), /not -1/],
  ['num_ipv4 1.5', wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: 1.5 }), /not 1\.5/],
  ['num_ipv4 10000', wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: 10000 }), /not 10000/],
  ['an IPv6 address among IPv4', wire('reserve', { hostname: 'h', uid: 'u', ipv4_addrs: ['fd00::1'] }), /^invalid ipv4_addrs\[0\]: fd00::1 is an IPv6 address, in the IPv4 list/],
  ['an unparsable address', wire('isolate', { hostname: 'h', container_id: 'c', pid: 5, ipv4_addrs: ['10.0.0.300'] }), /^invalid ipv4_addrs\[0\]: "10\.0\.0\.300" is not an IPv4 or IPv6 address/],
  ['addresses not a list', wire('reserve', { hostname: 'h', uid: 'u', ipv4_addrs: '10.0.0.1' }), /^invalid ipv4_addrs: must be a list of strings/],
  ['the same address twice', wire('reserve', { hostname: 'h', uid: 'u', ipv4_addrs: ['10.0.0.1', '10.0.0.1'] }), /10\.0\.0\.1 is listed twice/],
  ['nothing to reserve', wire('reserve', { hostname: 'h', uid: 'u' }), /both empty: nothing to reserve/],
  ['code in the ipv4_addrs label', wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: 1, labels: [{ key: 'ipv4_addrs', value: '__import__("os").system("touch /tmp/pwned")' }] }), /^invalid labels\.ipv4_addrs: must be a JSON list of IPv4 addresses/],
  ['release with both', wire('release', { ips: ['10.0.0.1'], uid: 'u' }), /give either "ips" or "uid", not both/],
  ['release with neither', wire('release', {}), /needs "ips" or "uid"/],
  ['a uid that is no name', wire('allocate', { hostname: 'h', uid: 'a:b', num_ipv4: 1 }), /^invalid uid: "a:b" must be letters/],
  ['a netgroup that is no name', wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: 1, netgroups: ['has(x)'] }), /^invalid netgroups\[0\]/],
  ['a label that is no label', wire('allocate', { hostname: 'h', uid: 'u', num_ipv4: 1, labels: ['x'] }), /^invalid labels\[0\]: must be \{"key": string, "value": string\}/],
  ['1 MB of input', wire('allocate', { hostname: 'h'.repeat(1 << 20), uid: 'u', num_ipv4: 1 }), /^invalid request: is \d+ bytes; at most 262144/],
];

for (const [what, text, message] of refusals) {
  test(`netmodules request - refused: ${what}`, (t) => {
    t.throws(() => parseRequest(text), { message });
  });
}
