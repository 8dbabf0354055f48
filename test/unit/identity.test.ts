import test from 'ava';
import {
  dockerPeerName,
  endpointNameOf,
  handleOf,
  hostEndpointRange,
  hostVethName,
  identityKey,
  isDockerHandle,
  linkOwnerTag,
  newDockerHandle,
  nodeOfEndpointName,
  ownsLegacyAllocation,
  parseHandle,
  workloadEndpointName,
  workloadOfKey,
  type CniAttachment,
} from '../../shared/endpoints/identity';

const cni = (network: string, containerId: string, ifname = 'eth0', node = 'node1'): CniAttachment => ({ orchestrator: 'cni', node, network, containerId, ifname });

test('identity - endpoint names double each part\'s dashes, and the node splits back', (t) => {
  t.is(workloadEndpointName({ node: 'my-host', orchestrator: 'cni', workload: 'abc-1', endpoint: 'eth0' }), 'my--host-cni-abc--1-eth0');
  t.is(endpointNameOf(cni('net', 'abc-1', 'eth0', 'my-host')), 'my--host-cni-abc--1-eth0');
  t.is(endpointNameOf({ orchestrator: 'libnetwork', node: 'h', endpointId: 'e1' }), 'h-libnetwork-libnetwork-e1');
  t.is(nodeOfEndpointName('my--host-cni-abc--1-eth0'), 'my-host');
  t.is(nodeOfEndpointName('a-cni-x-eth0'), 'a');
});

test('identity - handles cannot collide where Calico\'s do: network a + container b.c vs network a.b + container c', (t) => {
  const one = handleOf(cni('a', 'b.c'));
  const two = handleOf(cni('a.b', 'c'));
  t.not(one, two);
  t.is(one, 'cni:node1:a:b.c:eth0');
  t.deepEqual(parseHandle(one), cni('a', 'b.c'));
  t.deepEqual(parseHandle(two), cni('a.b', 'c'));
  t.not(handleOf(cni('n', 'c', 'eth0', 'host-1')), handleOf(cni('n', 'c', 'eth0', 'host-2')), 'the same container ID on two hosts is two owners');
  t.not(handleOf(cni('n', 'c', 'eth0')), handleOf(cni('n', 'c', 'eth1')), 'each interface is its own owner');
  t.is(parseHandle('a.b.c'), undefined, 'a legacy handle is not ours to parse');
  t.is(parseHandle('cni:a:b'), undefined);
  t.is(parseHandle('cni:n:a:b'), undefined);
});

test('identity - legacy handles are released only where the attributes name exactly this attachment', (t) => {
  const mine = cni('a', 'b.c');
  t.true(ownsLegacyAllocation(mine, 'a.b.c', { network: 'a', container: 'b.c', interface: 'eth0' }));
  t.false(ownsLegacyAllocation(mine, 'a.b.c', { network: 'a.b', container: 'c', interface: 'eth0' }), 'the other reading of a.b.c');
  t.false(ownsLegacyAllocation(mine, 'a.b.c', null), 'no attributes and two readings: never');
  t.true(ownsLegacyAllocation(cni('net', 'c1'), 'net.c1', null), 'no attributes but one reading');
  t.false(ownsLegacyAllocation(cni('net', 'c1', 'eth1'), 'net.c1', { network: 'net', container: 'c1', interface: 'eth0' }));
});

test('identity - host veths hash the whole identity; prefixes shared by IDs do not collide', (t) => {
  const a = hostVethName(cni('net', '0123456789abcdef-one'));
  const b = hostVethName(cni('net', '0123456789abcdef-two'));
  t.regex(a, /^cali[0-9a-f]{11}$/);
  t.not(a, b);
  t.not(hostVethName(cni('net1', 'x')), hostVethName(cni('net2', 'x')), 'the network is part of the identity');
  t.regex(dockerPeerName('e'.repeat(64)), /^tmp[0-9a-f]{11}$/);
  t.regex(linkOwnerTag(cni('net', 'x')), /^calico:[0-9a-f]{64}$/);
  t.not(linkOwnerTag(cni('net', 'x')), linkOwnerTag(cni('net', 'x', 'eth1')));
});

test('identity - identity keys name their workload back; Docker handles are recognised old and new', (t) => {
  for (const w of [cni('n.x', 'c-1', 'eth3'), { orchestrator: 'libnetwork' as const, node: 'node1', endpointId: 'ab12' }, { orchestrator: 'mesos' as const, node: 'node1', containerId: 'uuid-1' }]) {
    t.deepEqual(workloadOfKey(identityKey(w)), w);
  }
  t.true(isDockerHandle(newDockerHandle()));
  t.true(isDockerHandle('libnetwork.0b9a2f3e-8c1d-4e5f-9a7b-1c2d3e4f5a6b'));
  t.false(isDockerHandle('libnetwork.prod.c1'), 'a CNI network named libnetwork is not Docker');
  t.false(isDockerHandle(handleOf(cni('libnetwork', 'c1'))));
});

test('identity - a host\'s endpoint range never reaches another host whose name it starts', (t) => {
  const range = hostEndpointRange('a', 'cni');
  t.true(endpointNameOf(cni('n', 'c', 'eth0', 'a')).startsWith(range.namePrefix));
  t.false(endpointNameOf(cni('n', 'c', 'eth0', 'a-b')).startsWith(range.namePrefix));
  t.false(endpointNameOf(cni('n', 'c', 'eth0', 'a.cni')).startsWith(range.namePrefix));
  t.is(range.namespace, 'default');
  t.is(hostEndpointRange('a', 'libnetwork').namespace, 'libnetwork');
});
