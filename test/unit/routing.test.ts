import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { recordWorkloadMtu, workloadMtu } from '../../shared/routing/workload-mtu';
import { parseAddress } from '../../shared/net/address';
import { parseCidr } from '../../shared/net/cidr';
import type { EncapsulationMode } from '../../shared/ipam/pool';
import { RoutePlanner, routeKey, routingPlan, type HostAddresses, type RoutingBackend } from '../../shared/routing/desired-routes';

const hosts = [
  { name: 'a', ipv4Address: '10.99.0.11/24', ipv6Address: 'fd99::11/64' },
  { name: 'b', ipv4Address: '10.99.0.12/24', ipv6Address: 'fd99::12/64' },
  { name: 'far', ipv4Address: '192.168.7.1/24' },
];
const affinity = (host: string, cidr: string, confirmed = true) => ({ host, cidr: parseCidr(cidr), confirmed });
const desiredRoutes = (self: string, affinities: ReturnType<typeof affinity>[], hostList: typeof hosts, lent: { address: ReturnType<typeof parseAddress>; host: string }[] = []) =>
  routingPlan({ self, backend: 'static', affinities, hosts: hostList, pools: [], lent }).routes;

test('routing - other hosts\' confirmed blocks via them, unreachable for our own', (t) => {
  const routes = desiredRoutes('a', [
    affinity('a', '10.1.0.0/26'),
    affinity('b', '10.1.0.64/26'),
    affinity('b', 'fd00:1::40/122'),
    affinity('b', '10.1.0.128/26', false),
    affinity('far', '10.1.0.192/26'),
    affinity('gone', '10.1.1.0/26'),
  ], hosts);
  t.deepEqual(routes.map(routeKey).sort(), ['10.1.0.64/26 via 10.99.0.12', 'fd00:1::40/122 via fd99::12', 'unreachable 10.1.0.0/26']);
});

test('routing - a host without an address of its own routes only to itself', (t) => {
  t.deepEqual(desiredRoutes('x', [affinity('b', '10.1.0.64/26'), affinity('x', '10.1.0.0/26')], hosts).map(routeKey), ['unreachable 10.1.0.0/26']);
});

test('routing - an address of our block held by another host\'s workload is routed to that host; one of ours or of an unknown host is not', (t) => {
  const lent = [
    { address: parseAddress('10.1.0.34'), host: 'b' },
    { address: parseAddress('fd00:1::5'), host: 'b' },
    { address: parseAddress('10.1.0.35'), host: 'a' },
    { address: parseAddress('10.1.0.36'), host: 'far' },
  ];
  const routes = desiredRoutes('a', [affinity('a', '10.1.0.0/26')], hosts, lent);
  t.deepEqual(routes.map(routeKey).sort(), ['10.1.0.34/32 via 10.99.0.12', 'fd00:1::5/128 via fd99::12', 'unreachable 10.1.0.0/26']);
});

// Two racks: a and b in 10.99.0.0/24, c and d in 10.98.0.0/24; every host has its VXLAN end.
const racks = [
  { name: 'a', ipv4Address: '10.99.0.11/24', ipv6Address: 'fd99::11/64', vxlanTunnelAddress: '10.1.9.1', vxlanTunnelMac: '66:00:00:00:00:0a' },
  { name: 'b', ipv4Address: '10.99.0.12/24', ipv6Address: 'fd99::12/64', vxlanTunnelAddress: '10.1.9.2', vxlanTunnelMac: '66:00:00:00:00:0b' },
  { name: 'c', ipv4Address: '10.98.0.11/24', vxlanTunnelAddress: '10.1.9.3', vxlanTunnelMac: '66:00:00:00:00:0c' },
  { name: 'd', ipv4Address: '10.98.0.12/24' },
];
const blocks = [affinity('a', '10.1.0.0/26'), affinity('b', '10.1.0.64/26'), affinity('c', '10.1.0.128/26'), affinity('d', '10.1.0.192/26'), affinity('b', 'fd00:1::40/122')];
const pool = (ipipMode: EncapsulationMode, vxlanMode: EncapsulationMode) => ({ cidr: parseCidr('10.1.0.0/16'), ipipMode, vxlanMode });
const planFor = (backend: RoutingBackend, ipip: EncapsulationMode, vxlan: EncapsulationMode) => routingPlan({ self: 'a', backend, affinities: blocks, hosts: racks, pools: [pool(ipip, vxlan)] });

test('routing - VXLAN Always: every other host\'s blocks via its tunnel address on the VXLAN device, with its MAC and host address; a host without its tunnel end yet is left out', (t) => {
  const plan = planFor('vxlan', 'Never', 'Always');
  t.deepEqual(plan.routes.map(routeKey).sort(), ['10.1.0.128/26 via 10.1.9.3 dev vxlan.calico', '10.1.0.64/26 via 10.1.9.2 dev vxlan.calico', 'fd00:1::40/122 via fd99::12', 'unreachable 10.1.0.0/26']);
  t.deepEqual(plan.vxlanPeers.map((p) => `${p.mac} ${p.tunnelAddress.value === parseAddress('10.1.9.2').value ? 'b' : 'c'} at ${p.hostAddress.value === parseAddress('10.99.0.12').value ? '10.99.0.12' : '10.98.0.11'}`).sort(), ['66:00:00:00:00:0b b at 10.99.0.12', '66:00:00:00:00:0c c at 10.98.0.11']);
  t.deepEqual(plan.tunnels, { vxlan: true, ipip: false });
});

test('routing - CrossSubnet: the same rack directly, the other rack encapsulated (VXLAN before IPIP); IPv6 never encapsulated', (t) => {
  t.deepEqual(planFor('static', 'Never', 'CrossSubnet').routes.map(routeKey).sort(), ['10.1.0.128/26 via 10.1.9.3 dev vxlan.calico', '10.1.0.64/26 via 10.99.0.12', 'fd00:1::40/122 via fd99::12', 'unreachable 10.1.0.0/26']);
  t.deepEqual(planFor('static', 'CrossSubnet', 'Never').routes.map(routeKey).sort(), ['10.1.0.128/26 via 10.98.0.11 dev tunl0', '10.1.0.192/26 via 10.98.0.12 dev tunl0', '10.1.0.64/26 via 10.99.0.12', 'fd00:1::40/122 via fd99::12', 'unreachable 10.1.0.0/26']);
  t.deepEqual(planFor('static', 'Always', 'Never').routes.map(routeKey).sort(), ['10.1.0.128/26 via 10.98.0.11 dev tunl0', '10.1.0.192/26 via 10.98.0.12 dev tunl0', '10.1.0.64/26 via 10.99.0.12 dev tunl0', 'fd00:1::40/122 via fd99::12', 'unreachable 10.1.0.0/26']);
  t.deepEqual(planFor('static', 'Always', 'Never').tunnels, { vxlan: false, ipip: true });
});

test('routing - with BIRD, pools that never encapsulate are left to BIRD; encapsulated ones (and CrossSubnet\'s own rack) are ours; none routes nothing', (t) => {
  t.deepEqual(planFor('bird', 'Never', 'Never').routes.map(routeKey), ['unreachable 10.1.0.0/26']);
  t.deepEqual(planFor('bird', 'CrossSubnet', 'Never').routes.map(routeKey).sort(), ['10.1.0.128/26 via 10.98.0.11 dev tunl0', '10.1.0.192/26 via 10.98.0.12 dev tunl0', '10.1.0.64/26 via 10.99.0.12', 'unreachable 10.1.0.0/26']);
  t.deepEqual(planFor('none', 'Always', 'Always'), { routes: [], vxlanPeers: [], tunnels: { vxlan: false, ipip: false } });
  const lent = routingPlan({ self: 'a', backend: 'bird', affinities: blocks, hosts: racks, pools: [pool('Never', 'Never')], lent: [{ address: parseAddress('10.1.0.9'), host: 'b' }] });
  t.true(lent.routes.map(routeKey).includes('10.1.0.9/32 via 10.99.0.12'), 'an address of our block another host holds is ours to route (BIRD exports blocks only)');
});

test('workload MTU - what the daemon recorded, else 1500 (no file, or not a sane MTU)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mtu-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'sub', 'mtu');
  t.is(workloadMtu(file), 1500);
  recordWorkloadMtu(file, 1450);
  t.is(workloadMtu(file), 1450);
  for (const junk of ['abc', '70000', '12', '']) {
    writeFileSync(file, junk);
    t.is(workloadMtu(file), 1500, JSON.stringify(junk));
  }
});

test('route planner - one change at a time: a block claimed elsewhere is one route added; a Node\'s change redoes only its routes; random changes always equal the plan from scratch', (t) => {
  const planner = new RoutePlanner('a', 'vxlan');
  for (const host of racks) planner.setHost(host.name, host);
  planner.setPools([pool('Never', 'CrossSubnet')]);
  blocks.forEach((b) => planner.setAffinity(`${b.host} ${b.cidr.network}`, b));
  planner.changes();
  planner.setAffinity('c new', affinity('c', '10.1.1.0/26'));
  const claim = planner.changes();
  t.deepEqual([claim.added.map(routeKey), claim.removed.length, claim.peersAdded.length], [['10.1.1.0/26 via 10.1.9.3 dev vxlan.calico'], 0, 0], 'exactly one route, through an end already known');
  planner.setHost('c', { ...racks[2]!, vxlanTunnelMac: '66:00:00:00:00:cc' });
  const moved = planner.changes();
  t.deepEqual([moved.added.length, moved.removed.length, moved.peersAdded.map((p) => p.mac), moved.peersRemoved.map((p) => p.mac)], [0, 0, ['66:00:00:00:00:cc'], ['66:00:00:00:00:0c']], 'a new MAC: the end replaced, its routes unchanged');

  // Random changes, programmed as the changes say, always equal the plan from scratch.
  let seed = 7;
  const random = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!;
  const state = { hosts: new Map<string, HostAddresses>(racks.map((h) => [h.name, h])), affinities: new Map(blocks.map((b) => [`${b.host} ${b.cidr.network}`, b])), pools: [pool('Never', 'CrossSubnet')] };
  state.affinities.set('c new', affinity('c', '10.1.1.0/26'));
  state.hosts.set('c', { ...racks[2]!, vxlanTunnelMac: '66:00:00:00:00:cc' });
  const programmed = new Set(planner.plan().routes.map(routeKey));
  for (let i = 0; i < 500; i++) {
    const what = pick(['affinity', 'affinity', 'affinity', 'host', 'pool']);
    if (what === 'affinity') {
      const host = pick(['a', 'b', 'c', 'd', 'e']);
      const cidr = parseCidr(`10.1.${Math.floor(random() * 4)}.${Math.floor(random() * 4) * 64}/26`);
      const id = `${host} ${cidr.network}`;
      const next = random() < 0.3 ? undefined : affinity(host, `10.1.${(cidr.network >> 8n) & 255n}.${cidr.network & 255n}/26`, random() < 0.8);
      if (next) state.affinities.set(id, next);
      else state.affinities.delete(id);
      planner.setAffinity(id, next);
    } else if (what === 'host') {
      const base = pick(racks);
      const next = random() < 0.2 ? undefined : { ...base, ipv4Address: pick(['10.99.0.', '10.98.0.']) + String(10 + Math.floor(random() * 5)) + '/24' };
      if (next) state.hosts.set(base.name, next);
      else state.hosts.delete(base.name);
      planner.setHost(base.name, next);
    } else {
      state.pools = [pool(pick(['Never', 'CrossSubnet', 'Always'] as const), 'Never')];
      planner.setPools(state.pools);
    }
    if (random() < 0.5) continue;
    const changes = planner.changes();
    for (const r of changes.removed) t.true(programmed.delete(routeKey(r)), `removed ${routeKey(r)} was programmed`);
    for (const r of changes.added) {
      t.false(programmed.has(routeKey(r)), `added ${routeKey(r)} was not`);
      programmed.add(routeKey(r));
    }
    const scratch = routingPlan({ self: 'a', backend: 'vxlan', affinities: [...state.affinities.values()], hosts: [...state.hosts.values()], pools: state.pools });
    t.deepEqual([...programmed].sort(), scratch.routes.map(routeKey).sort());
  }
});
