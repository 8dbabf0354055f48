import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCidr } from '../../shared/net';
import { bgpPlan, type BgpNode } from '../../shared/routing/bgp-peers';
import { DEFAULT_BGP_SETTINGS, validateBgpConfiguration, validateBgpPeer } from '../../shared/routing/bgp-resources';
import { renderBirdConfig } from '../../shared/routing/bird-config';

const peer = (name: string, spec: Record<string, unknown>) => ({ kind: 'BGPPeer', metadata: { name }, spec });
const config = (spec: Record<string, unknown>, name = 'default') => ({ kind: 'BGPConfiguration', metadata: { name }, spec });

test('bgp resources - BGPConfiguration: Calico\'s defaults, AS numbers as numbers, text or asdot; bad values named', (t) => {
  t.deepEqual(validateBgpConfiguration(config({})), DEFAULT_BGP_SETTINGS);
  t.like(validateBgpConfiguration(config({ asNumber: '65001', nodeToNodeMeshEnabled: false, logSeverityScreen: 'Debug' })), { asNumber: 65001, nodeToNodeMeshEnabled: false, logSeverityScreen: 'Debug' });
  t.is(validateBgpConfiguration(config({ asNumber: '1.10' })).asNumber, 65546);
  const refusals: [unknown, RegExp][] = [
    [config({ asNumber: 0 }), /spec\.asNumber: 0 is not an AS number/],
    [config({ asNumber: 4294967296 }), /spec\.asNumber/],
    [config({ asNumber: '65536.1' }), /spec\.asNumber/],
    [config({ logSeverityScreen: 'Loud' }), /spec\.logSeverityScreen: "Loud" is not one of/],
    [config({ nodeToNodeMeshEnabled: 'yes' }), /spec\.nodeToNodeMeshEnabled: must be true or false/],
    [config({ asNumber: 65000 }, 'node.a'), /only in BGPConfiguration "default"/],
    [config({ listenPort: 179 }), /spec\.listenPort: unknown field/],
  ];
  for (const [resource, reason] of refusals) t.throws(() => validateBgpConfiguration(resource), { message: reason });
});

test('bgp resources - BGPPeer: an address and AS, or a peerSelector; for one node, a nodeSelector, or all; bad values named', (t) => {
  t.like(validateBgpPeer(peer('tor', { peerIP: '10.0.0.1', asNumber: 65100, nodeSelector: "rack == 'r1'" })), { name: 'tor', peer: { asNumber: 65100 } });
  t.like(validateBgpPeer(peer('rr', { peerSelector: 'has(route-reflector)' })), { name: 'rr' });
  const refusals: [unknown, RegExp][] = [
    [peer('p', { peerIP: '10.0.0.300', asNumber: 1 }), /spec\.peerIP: "10\.0\.0\.300" is not an IP address/],
    [peer('p', { peerIP: '10.0.0.1', asNumber: 'sixty' }), /spec\.asNumber: "sixty" is not an AS number/],
    [peer('p', { peerIP: '10.0.0.1' }), /spec\.asNumber: is required with peerIP/],
    [peer('p', { asNumber: 1 }), /spec\.peerIP: is required/],
    [peer('p', { node: 'a', nodeSelector: 'all()', peerIP: '10.0.0.1', asNumber: 1 }), /node and nodeSelector cannot both be set/],
    [peer('p', { peerSelector: 'all()', peerIP: '10.0.0.1' }), /peerSelector cannot be set with peerIP/],
    [peer('p', { peerSelector: "rack == 'r1" }), /spec\.peerSelector: .*position/],
    [{ kind: 'BGPPeer', metadata: {}, spec: {} }, /metadata\.name: is required/],
  ];
  for (const [resource, reason] of refusals) t.throws(() => validateBgpPeer(resource), { message: reason });
});

const nodes: BgpNode[] = [
  { name: 'a', labels: { rack: 'r1', 'route-reflector': 'true' }, ipv4Address: '10.99.0.11/24', ipv6Address: 'fd99::11/64', routeReflectorClusterId: '224.0.0.1' },
  { name: 'b', labels: { rack: 'r1' }, ipv4Address: '10.99.0.12/24', ipv6Address: 'fd99::12/64' },
  { name: 'c', labels: { rack: 'r2' }, ipv4Address: '10.98.0.11/24', asNumber: 65002 },
  { name: 'd', labels: { rack: 'r2' } },
];

test('bgp peers - the mesh: every other node of each family, with its own AS; an explicit peer wins for the same address; none without an IPv4 address', (t) => {
  const plan = bgpPlan('b', nodes, [validateBgpPeer(peer('to-a', { peerIP: '10.99.0.11', asNumber: 64512, node: 'b' }))], DEFAULT_BGP_SETTINGS)!;
  t.deepEqual(plan.peerings.map((p) => `${p.protocol} ${p.type} AS${p.asNumber}${p.reflectorClient ? ' client' : ''}`), [
    'Mesh_10_98_0_11 node-to-node mesh AS65002',
    'Mesh_fd99__11 node-to-node mesh AS64512',
    'Node_10_99_0_11 node specific AS64512',
  ]);
  t.is(bgpPlan('d', nodes, [], DEFAULT_BGP_SETTINGS), undefined);
});

test('bgp peers - selectors both ways, route reflectors and their clients (iBGP only), no peering with oneself', (t) => {
  const rules = [validateBgpPeer(peer('to-rr', { nodeSelector: 'all()', peerSelector: 'has(route-reflector)' }))];
  const settings = { ...DEFAULT_BGP_SETTINGS, nodeToNodeMeshEnabled: false };
  t.deepEqual(bgpPlan('b', nodes, rules, settings)!.peerings.map((p) => p.protocol), ['Node_10_99_0_11', 'Node_fd99__11']);
  const reflector = bgpPlan('a', nodes, rules, settings)!;
  t.deepEqual(reflector.peerings.map((p) => `${p.protocol}${p.reflectorClient ? ' client' : ''}`), ['Node_10_98_0_11', 'Node_10_99_0_12 client', 'Node_fd99__12 client'], 'c is of another AS: a plain eBGP peer');
  t.is(reflector.routeReflectorClusterId, '224.0.0.1');
});

/** Golden files: the rendered text is compared whole (UPDATE_GOLDEN=1 rewrites them), and BIRD itself parses each. */
const goldenCases = {
  'mesh-reflector-tor': () => bgpPlan('a', nodes, [validateBgpPeer(peer('tor', { nodeSelector: "rack == 'r1'", peerIP: '10.99.0.254', asNumber: 65100 }))], DEFAULT_BGP_SETTINGS)!,
  'client-no-mesh': () => bgpPlan('b', nodes, [validateBgpPeer(peer('to-rr', { peerSelector: 'has(route-reflector)' }))], { ...DEFAULT_BGP_SETTINGS, nodeToNodeMeshEnabled: false, logSeverityScreen: 'Warning' })!,
};
for (const [name, plan] of Object.entries(goldenCases)) {
  test(`bird config - ${name} renders as its golden file, and BIRD parses it`, (t) => {
    const text = renderBirdConfig({
      node: name,
      plan: plan(),
      ownBlocks: [parseCidr('10.170.1.0/26'), parseCidr('fd00:170::40/122')],
      pools: [
        { cidr: parseCidr('10.170.0.0/16'), ipipMode: 'Never', vxlanMode: 'Never' },
        { cidr: parseCidr('10.180.0.0/16'), ipipMode: 'Never', vxlanMode: 'CrossSubnet' },
        { cidr: parseCidr('fd00:170::/64'), ipipMode: 'Never', vxlanMode: 'Never' },
      ],
      logSeverity: name === 'client-no-mesh' ? 'Warning' : 'Info',
    });
    const file = join('test', 'golden', 'bird', `${name}.conf`);
    if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) writeFileSync(file, text);
    t.is(text, readFileSync(file, 'utf8'));
    t.notThrows(() => execFileSync('/usr/sbin/bird', ['-p', '-c', file], { stdio: 'pipe' }));
  });
}
