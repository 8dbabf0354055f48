import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { setTimeout } from 'node:timers/promises';
import { CniWorld } from '../helpers/cni-world';
import { NodeDaemon } from '../../sim/daemon';
import type { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import type { Datastore } from '../../shared/datastore';
import type { JsonObject } from '../../shared/datastore/codec';
import { enclosingCidr, formatCidr } from '../../shared/net';
import type { Ipam } from '../../shared/ipam/ipam';
import { join } from 'node:path';
import { BirdRouter } from '../../sim/bird-router';
import { runCalicoctl } from '../../sim/calicoctl';
import { bgpSessions } from '../../shared/dataplane/bird';
import type { Rack } from '../../sim/fabric';

// Three agents on one link and a fourth in a rack behind a router; daemons with --backend bird:
// every route to another host's block comes from BIRD (the kernel shows it with protocol bird).
let world: CniWorld;
let agents: MesosAgent[];
let rack: Rack;

test.before(async () => {
  world = await CniWorld.create();
  rack = await world.fabric.addRack();
  agents = [await world.addAgent(), await world.addAgent(), await world.addAgent(), await world.addAgent(rack)];
  // The first rack's hosts speak IPv6 too (no duplicate detection: BIRD binds at once).
  for (const [i, agent] of agents.slice(0, 3).entries()) await agent.host.ip('-6', 'addr', 'add', `fd99::${11 + i}/64`, 'dev', 'eth0', 'nodad');
});
test.after.always(async () => {
  await world?.destroy();
});

interface Cluster {
  readonly ds: Datastore;
  readonly ipam: Ipam;
  readonly prefix: string;
  readonly daemons: NodeDaemon[];
  readonly start: (i: number) => Promise<NodeDaemon>;
}

/**
 * A pool and a daemon with --backend bird on each of `hosts` (agent indexes), named `<label>-<i>`;
 * `before` runs first (Nodes with labels and AS numbers, BGP resources).
 */
async function cluster(t: ExecutionContext, label: string, hosts: readonly number[], before?: (ds: Datastore) => Promise<void>): Promise<Cluster> {
  const prefix = `/${label}-${randomUUID().slice(0, 8)}`;
  const { ds, ipam } = await world.datastore(prefix);
  await ipam.createPool('pool4', { cidr: '10.170.0.0/16' });
  await ipam.createPool('pool6', { cidr: 'fd00:170::/64' });
  await before?.(ds);
  const daemons: NodeDaemon[] = [];
  const start = async (i: number) => {
    const daemon = await NodeDaemon.start(agents[i]!.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', `${label}-${i}`, '--backend', 'bird', '--gc-interval', '0', '--no-policy', '--metrics-address', '']);
    daemons[i] = daemon;
    return daemon;
  };
  t.teardown(async () => {
    if (!t.passed) for (const daemon of daemons) if (daemon) t.log(daemon.stderr.split('\n').slice(-12).join('\n'));
    for (const daemon of daemons) await daemon?.destroy();
    // BIRD leaves its routes in the kernel when it stops (as it should): the next test's hosts start clean.
    for (const i of hosts) for (const family of ['-4', '-6']) await agents[i]!.host.ip(family, 'route', 'flush', 'proto', 'bird');
  });
  for (const i of hosts) await start(i);
  return { ds, ipam, prefix, daemons, start };
}

/** A Node made before its daemon starts: the daemon adds its address and keeps the rest. */
const node = (name: string, labels: Record<string, string>, bgp: Record<string, unknown> = {}) => ({ kind: 'Node' as const, apiVersion: 'projectcalico.org/v3' as const, metadata: { name, labels }, spec: { bgp } });
const resource = (kind: 'BGPPeer' | 'BGPConfiguration', name: string, spec: JsonObject) => ({ kind, apiVersion: 'projectcalico.org/v3' as const, metadata: { name }, spec });

/** A block for `node` (IPv4, or IPv6), claimed by an allocation the test releases afterwards. */
async function blockOf(t: ExecutionContext, ipam: Ipam, node: string, version: 4 | 6 = 4): Promise<string> {
  const handle = `test-${node}-${randomUUID().slice(0, 6)}`;
  const { ipv4, ipv6 } = await ipam.autoAssign({ handle, node, num4: version === 4 ? 1 : 0, num6: version === 6 ? 1 : 0 });
  t.teardown(() => ipam.releaseByHandle(handle));
  return formatCidr(enclosingCidr(version === 4 ? ipv4[0]! : ipv6[0]!, version === 4 ? 26 : 122));
}

/** The host's IPv6 routes from BIRD, as "dst via gw". */
const routes6Of = async (agent: MesosAgent) =>
  (await agent.host.json<{ dst: string; gateway?: string; protocol?: string }[]>('-6', 'route', 'show', 'proto', 'bird')).map((r) => `${r.dst} via ${r.gateway}`);

/** The host's routes to workload blocks: BIRD's (protocol bird) and the daemon's (80), as "dst via gw (proto)". */
const routesOf = async (agent: MesosAgent) =>
  (await agent.host.json<{ dst: string; gateway?: string; protocol?: string; type?: string }[]>('route', 'show')).filter((r) => r.protocol === 'bird' || r.protocol === '80').map((r) => `${r.type === 'unreachable' || r.type === 'blackhole' ? `${r.type} ` : ''}${r.dst}${r.gateway ? ` via ${r.gateway}` : ''} (${r.protocol})`);

test.serial('bgp - a full mesh of three hosts on one link: routes to each other\'s blocks from BIRD only, within 5 s, IPv6 too; a block claimed later is routed everywhere within 2 s; calicoctl node status shows every host\'s sessions; a removed host is withdrawn everywhere', async (t) => {
  const cl = await cluster(t, 'mesh', [0, 1, 2]);
  const { ds, ipam } = cl;
  t.teardown(() => Promise.all([0, 1, 2, 'later'].map((i) => ipam.releaseByHandle(`test-${i}`))));
  const blocks: string[] = [];
  let started = Date.now();
  for (let i = 0; i < 3; i++) {
    const { ipv4 } = await ipam.autoAssign({ handle: `test-${i}`, node: `mesh-${i}`, num4: 1, num6: 0 });
    blocks.push(formatCidr(enclosingCidr(ipv4[0]!, 26)));
  }
  const learned = async (i: number, j: number) => (await routesOf(agents[i]!)).includes(`${blocks[j]} via 10.99.0.${11 + j} (bird)`);
  const seen = new Map<string, number>();
  await waitFor('every host to learn every other host\'s block', async () => {
    for (const [i, j] of [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]] as const) if (!seen.has(`${i}<-${j}`) && (await learned(i, j))) seen.set(`${i}<-${j}`, Date.now() - started);
    return seen.size === 6;
  }, 15_000);
  t.log(JSON.stringify([...seen]));
  t.log(`mesh converged ${Date.now() - started} ms after the blocks were claimed (sessions starting)`);
  for (const agent of agents) t.false((await routesOf(agent)).some((r) => r.includes('via') && r.endsWith('(80)')), 'no route to another host from the daemon');
  // IPv6: sessions and routes the same way.
  const block6 = await blockOf(t, ipam, 'mesh-0', 6);
  await waitFor('an IPv6 block routed over the IPv6 sessions', async () => (await routes6Of(agents[1]!)).includes(`${block6} via fd99::11`) && (await routes6Of(agents[2]!)).includes(`${block6} via fd99::11`), 15_000);

  // A block claimed later: routed on every other host within 2 s, BIRD reconfigured without
  // dropping a session.
  const sessionsBefore = await bgpSessions(join(cl.daemons[0]!.dir, 'bird', 'bird.ctl'));
  const configWritten = (i: number) => statSync(join(cl.daemons[i]!.dir, 'bird', 'bird.conf')).mtimeMs;
  const configsBefore = [configWritten(0), configWritten(2)];
  started = Date.now();
  const later = await ipam.autoAssign({ handle: 'test-later', node: 'mesh-1', num4: 1, num6: 0 });
  const laterBlock = formatCidr(enclosingCidr(later.ipv4[0]!, 26));
  await waitFor('the new block routed on hosts 0 and 2', async () => (await routesOf(agents[0]!)).includes(`${laterBlock} via 10.99.0.12 (bird)`) && (await routesOf(agents[2]!)).includes(`${laterBlock} via 10.99.0.12 (bird)`), 2000);
  t.log(`a new block routed everywhere after ${Date.now() - started} ms`);
  t.deepEqual(await bgpSessions(join(cl.daemons[0]!.dir, 'bird', 'bird.ctl')), sessionsBefore, 'the same sessions, up since the same moment');
  await setTimeout(300);
  t.deepEqual([configWritten(0), configWritten(2)], configsBefore, 'another host\'s new block changes no BIRD configuration here: BGP carries it');

  // calicoctl node status shows every host's backend and sessions, as each daemon reported them.
  await waitFor('node status to show every session established', async () => {
    const status = await runCalicoctl(['node', 'status'], { ETCD_ENDPOINTS: world.fabric.etcd.endpoint, ETCD_PREFIX: cl.prefix });
    return /mesh-0\s+10\.99\.0\.11\/24\s+bird\s+(\d)\/\1 established/.test(status.stdout) && /mesh-2\s+10\.99\.0\.11\s+node-to-node mesh\s+up\s+\S+ \S+\s+Established/.test(status.stdout);
  }, 15_000);

  // A host removed (its daemon gone, its Node deleted): its routes are withdrawn everywhere.
  await cl.daemons[2]!.destroy();
  await ds.resources.delete('Node', 'mesh-2');
  await waitFor('host 2\'s routes withdrawn', async () => !(await routesOf(agents[0]!)).some((r) => r.includes('via 10.99.0.13')) && !(await routesOf(agents[1]!)).some((r) => r.includes('via 10.99.0.13')), 5000);
  t.pass();
});

test.serial('bgp - hosts peer with their top-of-rack router (AS per rack, mesh off): cross-rack traffic unencapsulated through it; the router learns exactly the hosts\' blocks', async (t) => {
  // Rack 1: agents 0 and 1 (AS 65001), peering with the router's uplink and, within the rack, with
  // each other; rack 2: agent 3 (AS 65002), peering with the router's rack address.
  const tor = await BirdRouter.start(rack.router, rack.uplink, 65100, [
    { address: '10.99.0.11', asNumber: 65001 },
    { address: '10.99.0.12', asNumber: 65001 },
    { address: '10.98.0.11', asNumber: 65002 },
  ]);
  t.teardown(() => tor.destroy());
  const { ipam, daemons, prefix } = await cluster(t, 'tor', [0, 1, 3], async (ds) => {
    await ds.resources.create(node('tor-0', { rack: 'r1' }, { asNumber: 65001 }));
    await ds.resources.create(node('tor-1', { rack: 'r1' }, { asNumber: 65001 }));
    await ds.resources.create(node('tor-3', { rack: 'r2' }, { asNumber: 65002 }));
    await ds.resources.create(resource('BGPConfiguration', 'default', { nodeToNodeMeshEnabled: false }));
    await ds.resources.create(resource('BGPPeer', 'rack1-tor', { nodeSelector: "rack == 'r1'", peerIP: rack.uplink, asNumber: 65100 }));
    await ds.resources.create(resource('BGPPeer', 'rack2-tor', { nodeSelector: "rack == 'r2'", peerIP: rack.gateway, asNumber: 65100 }));
    await ds.resources.create(resource('BGPPeer', 'rack1-mesh', { nodeSelector: "rack == 'r1'", peerSelector: "rack == 'r1'" }));
  });
  const tasks: { agent: MesosAgent; id: string; ip: string }[] = [];
  for (const i of [0, 1, 3]) {
    const id = randomUUID();
    const launched = await agents[i]!.launch(id, [{ network: world.network('net', prefix, `tor-${i}`, { daemon_socket: daemons[i]!.cniSocket }) }]);
    t.is(launched.runs[0]!.code, 0, launched.runs[0]!.stdout);
    tasks.push({ agent: agents[i]!, id, ip: launched.ips[0]!.ip4!.split('/')[0]! });
    t.teardown(() => agents[i]!.destroy(id));
  }
  const [a, b, c] = tasks as [typeof tasks[number], typeof tasks[number], typeof tasks[number]];
  await waitFor('cross-rack reachability through the router', async () => a.agent.container(a.id).ping(c.ip), 20_000);
  t.true(await c.agent.container(c.id).ping(a.ip), 'and back');
  await waitFor('the same rack through the rack\'s own peering', async () => a.agent.container(a.id).ping(b.ip), 10_000);
  t.false((await agents[0]!.host.ip('link', 'show')).includes('vxlan.calico'), 'no encapsulation');
  const blocks = (await ipam.hostBlocks('tor-0')).concat(await ipam.hostBlocks('tor-1'), await ipam.hostBlocks('tor-3')).map(formatCidr).sort();
  await waitFor('the router to know every block', async () => JSON.stringify((await tor.routes()).filter((r) => r.startsWith('10.170.')).sort()) === JSON.stringify(blocks), 5000);
  t.deepEqual((await tor.routes()).sort(), blocks, 'the router learns exactly the hosts\' blocks, nothing else');
});

test.serial('bgp - a route reflector with the mesh off: its clients learn each other\'s blocks through it alone', async (t) => {
  const { ipam, daemons } = await cluster(t, 'rr', [0, 1, 2], async (ds) => {
    await ds.resources.create(node('rr-0', { 'route-reflector': 'true' }, { routeReflectorClusterID: '224.0.0.1' }));
    await ds.resources.create(resource('BGPConfiguration', 'default', { nodeToNodeMeshEnabled: false }));
    await ds.resources.create(resource('BGPPeer', 'to-reflectors', { nodeSelector: 'all()', peerSelector: 'has(route-reflector)' }));
  });
  const [one, two] = [await blockOf(t, ipam, 'rr-1'), await blockOf(t, ipam, 'rr-2')];
  await waitFor('clients to learn each other\'s blocks via the reflector', async () => (await routesOf(agents[1]!)).includes(`${two} via 10.99.0.13 (bird)`) && (await routesOf(agents[2]!)).includes(`${one} via 10.99.0.12 (bird)`), 20_000);
  const sessions = (await bgpSessions(join(daemons[1]!.dir, 'bird', 'bird.ctl'))).map((s) => `${s.protocol} ${s.info}`);
  t.deepEqual(sessions, ['Node_10_99_0_11 Established', 'Node_fd99__11 Established'], 'a client peers with the reflector only (over IPv4 and IPv6)');
});

test.serial('bgp - BIRD killed: the daemon starts it again and forwarding never stops (graceful restart); the daemon restarted: sessions come back and routes never went', async (t) => {
  const { prefix, daemons, start } = await cluster(t, 'gr', [0, 1]);
  const tasks: { agent: MesosAgent; id: string; ip: string }[] = [];
  for (const i of [0, 1]) {
    const id = randomUUID();
    const launched = await agents[i]!.launch(id, [{ network: world.network('net', prefix, `gr-${i}`, { daemon_socket: daemons[i]!.cniSocket }) }]);
    t.is(launched.runs[0]!.code, 0, launched.runs[0]!.stdout);
    tasks.push({ agent: agents[i]!, id, ip: launched.ips[0]!.ip4!.split('/')[0]! });
  }
  t.teardown(async () => {
    for (const task of tasks) await task.agent.destroy(task.id);
  });
  const [a, b] = tasks as [typeof tasks[number], typeof tasks[number]];
  await waitFor('the two tasks to reach each other', async () => a.agent.container(a.id).ping(b.ip), 20_000);
  const established = async (i: number) => bgpSessions(join(daemons[i]!.dir, 'bird', 'bird.ctl')).then((sessions) => sessions.length > 0 && sessions.every((s) => s.info === 'Established'), () => false);

  /**
   * Pings from a to b, one after another, while `disturb` runs and until it has settled; the ones
   * lost. Each waits up to 3 s for its answer: a packet dropped never gets one, while under the
   * whole suite's load an answer may take longer than a second to reach ping.
   */
  const lostWhile = async (disturb: () => Promise<void>): Promise<number> => {
    const started = Date.now();
    const lost: string[] = [];
    let done = false;
    const pinging = (async () => {
      while (!done) {
        const sent = Date.now() - started;
        await a.agent.container(a.id).exec('ping', ['-c', '1', '-W', '3', b.ip], { timeout: 5000 }).catch((err: Error) => lost.push(`at ${sent} ms: ${err.message.split('\n').slice(-3).join(' ')}`));
      }
    })();
    try {
      await disturb();
    } finally {
      done = true;
      await pinging;
    }
    // When one is lost: when, and what ping said, beside the daemons' logs.
    for (const line of lost) t.log(line);
    return lost.length;
  };

  const restartsDone = () => daemons[0]!.stderr.split('Graceful restart done').length - 1;
  const lostToKill = await lostWhile(async () => {
    const first = daemons[0]!.birdPid()!;
    const done = restartsDone();
    process.kill(first, 'SIGKILL');
    await waitFor('a new BIRD on host 0', async () => (daemons[0]!.birdPid() ?? first) !== first, 10_000);
    await waitFor('its sessions back', async () => (await established(0)) && (await established(1)), 20_000);
    // Its peer keeps its routes, as stale, until the new BIRD says it has sent them all (its
    // graceful restart is done); a session that drops again before that takes the stale routes
    // with it (RFC 4724). So the next disturbance waits for the end of this one.
    await waitFor('the new BIRD\'s graceful restart to end', async () => restartsDone() > done, 20_000);
  });
  t.is(lostToKill, 0, 'no ping lost while BIRD was killed and started again');
  t.regex(daemons[0]!.stderr, /BIRD stopped; starting it again/);

  const lostToRestart = await lostWhile(async () => {
    const stopping = daemons[0]!.birdPid()!;
    await daemons[0]!.stop('SIGTERM');
    t.false(existsSync(`/proc/${stopping}`), 'the daemon stopped its BIRD as it stopped');
    const again = await start(0);
    await waitFor('sessions back after the daemon\'s restart', async () => (await established(0)) && (await established(1)), 20_000);
    t.truthy(again.birdPid());
  });
  t.is(lostToRestart, 0, 'no ping lost while the daemon restarted');
});

test.serial('bgp - bad input: a BGPPeer, BGPConfiguration or IP pool written straight to etcd is logged and skipped; a configuration BIRD refuses leaves the last good one running', async (t) => {
  const { ds, ipam, daemons } = await cluster(t, 'bad', [0, 1]);
  const [zero, one] = [await blockOf(t, ipam, 'bad-0'), await blockOf(t, ipam, 'bad-1')];
  await waitFor('the mesh to route', async () => (await routesOf(agents[0]!)).includes(`${one} via 10.99.0.12 (bird)`) && (await routesOf(agents[1]!)).includes(`${zero} via 10.99.0.11 (bird)`), 20_000);
  const raw = async (kind: 'BGPPeer' | 'BGPConfiguration', name: string, spec: JsonObject) => ds.kv.txn([{ key: ds.keys.resource(kind, name), put: JSON.stringify({ kind, apiVersion: 'projectcalico.org/v3', metadata: { name }, spec }) }]);
  await raw('BGPPeer', 'bad-ip', { peerIP: '10.99.0.300', asNumber: 65000 });
  await raw('BGPPeer', 'bad-as', { peerIP: '10.99.0.250', asNumber: 'sixty' });
  await raw('BGPConfiguration', 'default', { asNumber: 0 });
  await ds.kv.txn([{ key: ds.keys.resource('IPPool', 'odd'), put: JSON.stringify({ kind: 'IPPool', apiVersion: 'projectcalico.org/v3', metadata: { name: 'odd' }, spec: { cidr: '10.171.0.0/16', vxlanMode: 'Sometimes' } }) }]);
  await waitFor('the bad resources to be reported', async () => /skipping a malformed record.*ippools\/odd.*Sometimes\\?" is not one of/s.test(daemons[0]!.stderr) && /bad-ip.*not an IP address/s.test(daemons[0]!.stderr) && /bad-as.*not an AS number/s.test(daemons[0]!.stderr) && /BGPConfiguration default.*not an AS number/s.test(daemons[0]!.stderr), 5000);
  // A peer BIRD itself refuses (a link-local address needs an interface): the configuration is refused, the last good one stays.
  await raw('BGPPeer', 'link-local', { peerIP: 'fe80::1', asNumber: 65000 });
  await waitFor('BIRD to refuse the configuration', async () => /BIRD configuration refused; the last good one stays/.test(daemons[0]!.stderr), 5000);
  t.true((await bgpSessions(join(daemons[0]!.dir, 'bird', 'bird.ctl'))).some((s) => s.protocol === 'Mesh_10_99_0_12' && s.info === 'Established'), 'the last good configuration still runs');
  t.true((await routesOf(agents[0]!)).includes(`${one} via 10.99.0.12 (bird)`));
});

test.serial('bgp - an address borrowed from another rack\'s block (its pool had no block left) is exported by the borrower and reached across the router', async (t) => {
  const tor = await BirdRouter.start(rack.router, rack.uplink, 65100, [{ address: '10.99.0.11', asNumber: 65001 }, { address: '10.98.0.11', asNumber: 65002 }]);
  t.teardown(() => tor.destroy());
  const { daemons, prefix } = await cluster(t, 'borrow', [0, 3], async (ds) => {
    // One block in all: the second host's task can only borrow from the first's.
    await ds.resources.create({ kind: 'IPPool', apiVersion: 'projectcalico.org/v3', metadata: { name: 'tiny' }, spec: { cidr: '10.175.0.0/26', blockSize: 26, ipipMode: 'Never', vxlanMode: 'Never', natOutgoing: false, nodeSelector: 'all()', disabled: false } });
    await ds.resources.create(node('borrow-0', { rack: 'r1' }, { asNumber: 65001 }));
    await ds.resources.create(node('borrow-3', { rack: 'r2' }, { asNumber: 65002 }));
    await ds.resources.create(resource('BGPConfiguration', 'default', { nodeToNodeMeshEnabled: false }));
    await ds.resources.create(resource('BGPPeer', 'rack1-tor', { nodeSelector: "rack == 'r1'", peerIP: rack.uplink, asNumber: 65100 }));
    await ds.resources.create(resource('BGPPeer', 'rack2-tor', { nodeSelector: "rack == 'r2'", peerIP: rack.gateway, asNumber: 65100 }));
  });
  const tasks: { agent: MesosAgent; id: string; ip: string }[] = [];
  for (const i of [0, 3]) {
    const id = randomUUID();
    const network = world.network('net', prefix, `borrow-${i}`, { daemon_socket: daemons[i]!.cniSocket, ipam: { type: 'calico-ipam', ipv4_pools: ['tiny'], assign_ipv6: 'false' } });
    const launched = await agents[i]!.launch(id, [{ network }]);
    t.is(launched.runs[0]!.code, 0, launched.runs[0]!.stdout);
    tasks.push({ agent: agents[i]!, id, ip: launched.ips[0]!.ip4!.split('/')[0]! });
    t.teardown(() => agents[i]!.destroy(id));
  }
  const [a, c] = tasks as [typeof tasks[number], typeof tasks[number]];
  t.true(c.ip.startsWith('10.175.0.'), 'the second task borrowed from the first host\'s block');
  await waitFor('the borrowed address routed through the router', async () => (await tor.routes()).includes(`${c.ip}/32`), 20_000);
  await waitFor('the tasks to reach each other across the router', async () => a.agent.container(a.id).ping(c.ip), 20_000);
  t.true(await c.agent.container(c.id).ping(a.ip), 'and back');
});
