import test from 'ava';
import { randomUUID } from 'node:crypto';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';
import { NodeDaemon } from '../../sim/daemon';
import { waitFor } from '../../sim/wait';
import { MesosAgent } from '../../sim/mesos-agent';
import { enclosingCidr, formatCidr } from '../../shared/net';
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

let world: CniWorld;
const daemons: NodeDaemon[] = [];

test.before(async () => {
  world = await CniWorld.create();
});
test.after.always(async () => {
  for (const d of daemons) await d.destroy();
  await world?.destroy();
});

const routesOf = async (agent: MesosAgent) => (await agent.host.json<{ dst: string; gateway?: string; type?: string }[]>('route', 'show', 'proto', '80')).map((r) => `${r.type === 'unreachable' ? 'unreachable ' : ''}${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}`);

test.serial('routes - tasks on two agents reach each other; a later block is routed within seconds; a removed host loses its routes', async (t) => {
  const { prefix, ds, ipam } = await world.scenario('routes', { v4: '10.150.0.0/16', v6: 'fd00:150::/64' });
  const agents = [await world.addAgent(), await world.addAgent()];
  for (const [i, agent] of agents.entries()) {
    const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', `agent-${i}`]);
    daemons.push(daemon);
  }
  const [one, two] = agents as [MesosAgent, MesosAgent];
  const [a, b] = [randomUUID(), randomUUID()];
  const launchA = await one.launch(a, [{ network: world.network('net', prefix, 'agent-0', { daemon_socket: daemons[0]!.cniSocket }) }]);
  const launchB = await two.launch(b, [{ network: world.network('net', prefix, 'agent-1', { daemon_socket: daemons[1]!.cniSocket }) }]);
  t.is(launchA.runs[0]!.code, 0, launchA.runs[0]!.stdout);
  t.is(launchB.runs[0]!.code, 0, launchB.runs[0]!.stdout);
  const [ipA, ipB] = [launchA.ips[0]!.ip4!.split('/')[0]!, launchB.ips[0]!.ip4!.split('/')[0]!];
  const nodes = await ds.resources.list('Node');
  t.deepEqual(nodes.map((n) => [n.metadata.name, n.spec.bgp?.ipv4Address]).sort(), [['agent-0', '10.99.0.11/24'], ['agent-1', '10.99.0.12/24']], 'each daemon registered its host');
  // Both ways: a ping's answer needs the route back. Each host then programs the other task's
  // address into its policy moments after it learns of its endpoint (closed until then).
  await waitFor('routes to the other host\'s block', async () => (await routesOf(one)).some((r) => r.endsWith('via 10.99.0.12')), 10_000);
  await waitFor('routes back', async () => (await routesOf(two)).some((r) => r.endsWith('via 10.99.0.11')), 10_000);
  await waitFor('a task on agent-0 to reach one on agent-1', () => one.container(a).ping(ipB), 5000);
  t.true(await two.container(b).ping(ipA), 'and back');
  t.true((await routesOf(one)).some((r) => r.startsWith('unreachable ')), 'its own block is unreachable beyond its workloads');

  // A block agent-1 claims later appears on agent-0 within seconds.
  await ipam.createPool('later', { cidr: '10.151.0.0/24' });
  const later = await ipam.autoAssign({ handle: 'later.x', node: 'agent-1', num4: 1, num6: 0, pools4: ['later'] });
  const block = formatCidr(enclosingCidr(later.ipv4[0]!, 26));
  const started = Date.now();
  await waitFor('a route to the new block', async () => (await routesOf(one)).includes(`${block} via 10.99.0.12`), 5000);
  t.log(`new block routed after ${Date.now() - started} ms`);

  // A host that is removed loses its routes.
  for (const r of await two.destroy(b)) t.is(r.code, 0);
  await ipam.releaseByHandle('later.x');
  await daemons[1]!.destroy();
  await ds.resources.delete('Node', 'agent-1');
  await waitFor('the removed host\'s routes to go', async () => !(await routesOf(one)).some((r) => r.includes('via 10.99.0.12')), 5000);
  t.pass();

  for (const r of await one.destroy(a)) t.is(r.code, 0);
  await assertNothingLeft(t, ds, []);
});

test.serial('routes - a pool of single-address blocks (blockSize 32): the block\'s unreachable route stands beside the workload\'s own, which still wins', async (t) => {
  const { prefix, ipam } = await world.scenario('routes32', { v4: '10.153.0.0/16', v6: 'fd00:153::/64' });
  await ipam.createPool('single', { cidr: '10.154.0.0/24', blockSize: 32 });
  const agent = await world.addAgent();
  const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', 'single', '--no-policy']);
  daemons.push(daemon);
  const id = randomUUID();
  const launched = await agent.launch(id, [{ network: world.network('net', prefix, 'single', { daemon_socket: daemon.cniSocket, ipam: { type: 'calico-ipam', ipv4_pools: ['single'], assign_ipv6: 'false' } }) }]);
  t.is(launched.runs[0]!.code, 0, launched.runs[0]!.stdout);
  const ip = launched.ips[0]!.ip4!.split('/')[0]!;
  await waitFor('the block\'s unreachable route', async () => (await routesOf(agent)).includes(`unreachable ${ip}`), 10_000);
  t.true(await agent.host.ping(ip), 'the host still reaches its workload');
  const routes = await agent.host.json<{ dst: string; dev?: string; type?: string; metric?: number }[]>('route', 'show', 'to', 'exact', `${ip}/32`);
  t.deepEqual(routes.map((r) => `${r.type ?? 'unicast'} ${r.dev ?? ''} ${r.metric ?? 0}`).sort(), [`unicast ${routes.find((r) => r.dev)?.dev} 0`, 'unreachable  1024'].sort());
  for (const r of await agent.destroy(id)) t.is(r.code, 0);
});

/** Route changes of our protocol on a host while `during` runs, as the kernel announces them. */
async function routeChangesDuring(agent: MesosAgent, during: () => Promise<void>): Promise<string[]> {
  const monitor = spawn('nsenter', [`--net=${agent.host.path}`, 'ip', '-o', 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  monitor.stdout.on('data', (d) => (out += d));
  await sleep(200);
  try {
    await during();
    await sleep(500);
  } finally {
    monitor.kill();
  }
  return out.split('\n').filter((line) => / proto 80\b/.test(line));
}

test.serial('routes - a block claimed on one host is exactly one route change on each other host; a route deleted by hand is back after the periodic repair', async (t) => {
  const { prefix, ds, ipam } = await world.scenario('routes-count', { v4: '10.152.0.0/16', v6: 'fd00:152::/64' });
  const agents = [await world.addAgent(), await world.addAgent(), await world.addAgent()];
  const started: NodeDaemon[] = [];
  for (const [i, agent] of agents.entries()) {
    started.push(await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.etcd.hostEndpoint, '--etcd-prefix', prefix, '--nodename', `count-${i}`, '--route-repair', '2']));
  }
  t.teardown(async () => {
    for (const d of started) await d.destroy();
  });
  const handles: string[] = [];
  t.teardown(() => Promise.all(handles.map((h) => ipam.releaseByHandle(h))));
  await ipam.createPool('second', { cidr: '10.153.0.0/16' });
  // Each claim from a pool of its own: a new block, not an address of the block the host has.
  const claim = async (node: string, pool: string) => {
    handles.push(`${node}.${randomUUID()}`);
    return formatCidr(enclosingCidr((await ipam.autoAssign({ handle: handles.at(-1)!, node, num4: 1, num6: 0, pools4: [pool] })).ipv4[0]!, 26));
  };
  await waitFor('host 2 to register', async () => (await ds.resources.get('Node', 'count-2'))?.spec.bgp?.ipv4Address !== undefined, 5000);
  const address = (await ds.resources.get('Node', 'count-2'))!.spec.bgp!.ipv4Address!.split('/')[0]!;
  const first = await claim('count-2', 'pool4');
  const routed = async (agent: MesosAgent, block: string) => (await routesOf(agent)).includes(`${block} via ${address}`);
  await waitFor('the first block routed on hosts 0 and 1', async () => (await routed(agents[0]!, first)) && (await routed(agents[1]!, first)), 10_000);

  let second = '';
  const changes = await Promise.all([0, 1].map((i) => routeChangesDuring(agents[i]!, async () => {
    if (i === 0) second = await claim('count-2', 'second');
    await waitFor('the second block routed', async () => second !== '' && (await routed(agents[i]!, second)), 5000);
  })));
  for (const [i, lines] of changes.entries()) t.deepEqual(lines.map((l) => l.split(' ')[0]), [second], `host ${i}: one route added, nothing else touched`);

  // Someone deletes our route by hand: the repair (every 2 s here) puts it back.
  await agents[0]!.host.ip('route', 'del', first, 'proto', '80');
  await waitFor('the deleted route to come back', () => routed(agents[0]!, first), 6000);
  t.pass();
});
