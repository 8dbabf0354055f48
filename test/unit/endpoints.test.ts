import test from 'ava';
import { sanitiseLabels } from '../../shared/endpoints/labels';
import { isLegacyNetworkProfile, networkProfile } from '../../shared/endpoints/profile';
import { buildWorkloadEndpoint, isEndpointOf, workloadOfEndpoint } from '../../shared/endpoints/workload-endpoint';
import { parseAddress } from '../../shared/net/address';

test('endpoints - a CNI workload endpoint in the Calico layout', (t) => {
  const attachment = { orchestrator: 'cni' as const, node: 'node1', network: 'net1', containerId: '4f3a9c2d7e1b', ifname: 'eth0' };
  const wep = buildWorkloadEndpoint(
    attachment,
    { containerID: '4f3a9c2d7e1b', addresses: [parseAddress('192.168.10.1'), parseAddress('fd00::1')], profiles: ['net1'], interfaceName: 'cali4f3a9c2d7e1', mac: '5e:2b:7c:01:aa:10', labels: { app: 'web' } },
  );
  t.is(wep.metadata.name, 'node1-cni-4f3a9c2d7e1b-eth0');
  t.deepEqual(wep.metadata.labels, { app: 'web', 'projectcalico.org/namespace': 'default', 'projectcalico.org/orchestrator': 'cni' });
  t.deepEqual(wep.spec.ipNetworks, ['192.168.10.1/32', 'fd00::1/128']);
  t.is(wep.spec.interfaceName, 'cali4f3a9c2d7e1');
  t.is(wep.metadata.annotations!['projectcalico.org/owner'], 'cni:node1:net1:4f3a9c2d7e1b:eth0');
  t.true(isEndpointOf(wep, attachment));
  t.false(isEndpointOf(wep, { ...attachment, network: 'net2' }), 'the same container and interface on another network is another owner');
  t.deepEqual(workloadOfEndpoint(wep), attachment);
  const { annotations: _dropped, ...legacyMeta } = wep.metadata;
  t.deepEqual(workloadOfEndpoint({ ...wep, metadata: legacyMeta }), attachment, 'records of earlier releases are read from their spec');
});

test('endpoints - profiles allow from the same network and all egress', (t) => {
  const p = networkProfile('net1');
  t.deepEqual(p.spec.ingress, [{ action: 'Allow', source: { selector: 'has(pcn.net1)' }, destination: {} }]);
  t.deepEqual(p.spec.labelsToApply, { 'pcn.net1': '' });
  t.false(isLegacyNetworkProfile(p));
  t.true(isLegacyNetworkProfile({ ...p, spec: { ingress: [{ action: 'Allow', source: { selector: 'has(net1)' }, destination: {} }], egress: [{ action: 'Allow', source: {}, destination: {} }], labelsToApply: { net1: '' } } }));
});

test('endpoints - labels are sanitised like Calico\'s Mesos integration', (t) => {
  t.deepEqual(
    sanitiseLabels([
      ['org.apache/app', 'web server!'],
      ['-weird key-', 'x'.repeat(80)],
      ['///', 'dropped'],
      ['tier', '-front-'],
      ['pcn.netB', ''],
      ['projectcalico.org/namespace', 'libnetwork'],
    ]),
    { labels: { 'org.apache.app': 'web-server', 'weird-key': 'x'.repeat(63), tier: 'front' }, refused: ['pcn.netB', 'projectcalico.org.namespace'], dropped: ['///'] },
  );
});

test('endpoints - label keys longer than 63 characters never collide: cut, with a hash of the whole key at the end', (t) => {
  const long = 'k'.repeat(70);
  const { labels } = sanitiseLabels([[`${long}-a`, '1'], [`${long}-b`, '2'], ['k'.repeat(63), '3']]);
  const keys = Object.keys(labels);
  t.is(keys.length, 3, 'three keys stay three');
  for (const key of keys) t.true(key.length <= 63 && /^[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9]$/.test(key), key);
  t.deepEqual(Object.values(labels).sort(), ['1', '2', '3']);
  t.is(sanitiseLabels([[`${long}-a`, '1']]).labels[keys[0]!], '1', 'the same key always shortens the same way');
});
