/**
 * Bad records are contained, views are fresh, identity is one's own: on two agents with daemons.
 * A malformed affinity, block, pool, endpoint (and a wrongly typed one) each stop nothing else;
 * a pool written a moment ago is usable through the daemon; ADDs into namespaces that already send
 * succeed; a second daemon with a taken node name is refused, and the rightful one writes its
 * Node's address back.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { formatCidr, parseAddress, parseCidr } from '../../shared/net';
import { runCalicoctl } from '../../sim/calicoctl';
import { NodeDaemon } from '../../sim/daemon';
import type { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { CniWorld } from '../../sim/world';
import type { Datastore } from '../../shared/datastore';
import type { Ipam } from '../../shared/ipam/ipam';
import { packets } from '../helpers/packets';

const state = {} as { world: CniWorld; agents: MesosAgent[]; prefix: string; ds: Datastore; ipam: Ipam; daemons: NodeDaemon[] };

test.before(async () => {
  state.world = await CniWorld.create();
  state.agents = [await state.world.addAgent(), await state.world.addAgent()];
  const { prefix, ds, ipam } = await state.world.scenario('contain', { v4: '10.180.0.0/16', v6: 'fd00:180::/64' });
  Object.assign(state, { prefix, ds, ipam });
  state.daemons = [];
  for (const i of [0, 1]) {
    state.daemons.push(await NodeDaemon.start(state.agents[i]!.host, ['--etcd-endpoints', state.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', `contain-${i}`, '--gc-interval', '0.5', '--gc-grace', '1', '--metrics-address', '']));
  }
});
test.after.always(async () => {
  for (const daemon of state.daemons ?? []) await daemon.destroy();
  await state.world?.destroy();
});

const network = (i: number, extra: Record<string, unknown> = {}) => state.world.network('net', state.prefix, `contain-${i}`, { daemon_socket: state.daemons[i]!.cniSocket, ...extra });

async function launch(i: number, extra: Record<string, unknown> = {}) {
  const id = randomUUID();
  const launched = await state.agents[i]!.launch(id, [{ network: network(i, extra) }]);
  return { id, run: launched.runs[0]!, ip: launched.ips[0]?.ip4?.split('/')[0] };
}

const logged = (daemon: NodeDaemon, key: string) => daemon.stderr.split('\n').filter((line) => line.includes('skipping a malformed record') && line.includes(`key=${key} `)).length;
const routesOf = async (agent: MesosAgent) => (await agent.host.json<{ dst: string }[]>('route', 'show', 'proto', '80')).map((r) => r.dst);

test.serial('containment - a malformed affinity, block, pool and endpoint each stop nothing else: new blocks are still routed, ADDs still allocate, GC still collects, ipam check still answers; each key is logged once, with its field', async (t) => {
  const { ds, ipam } = state;
  const garbage = [
    { key: ds.keys.affinity('ghost', parseCidr('10.180.250.0/26')), put: '{"state":7}' },
    // A block of host 0's own, that cannot be read.
    { key: ds.keys.affinity('contain-0', parseCidr('10.180.251.0/26')), put: '{"state":"confirmed","deleted":false}' },
    { key: ds.keys.block(parseCidr('10.180.251.0/26')), put: 'not json at all' },
    { key: ds.keys.resource('IPPool', 'broken'), put: '{"kind":"IPPool","metadata":{"name":"broken"},"spec":{"cidr":"10.181.0.0/16","blockSize":"big"}}' },
    // This host's endpoint, typed wrongly: ipNetworks a number.
    { key: ds.keys.resource('WorkloadEndpoint', 'contain--0-cni-typed-eth0', 'default'), put: '{"kind":"WorkloadEndpoint","metadata":{"name":"contain--0-cni-typed-eth0","namespace":"default"},"spec":{"node":"contain-0","orchestrator":"cni","endpoint":"eth0","ipNetworks":5,"profiles":[],"interfaceName":"calityped"}}' },
  ];
  await ds.kv.txn(garbage);
  t.teardown(() => ds.kv.txn(garbage.map(({ key }) => ({ key, delete: true as const }))));

  // Host 1 claims a block of its own after the garbage: host 0 routes it.
  const before = await routesOf(state.agents[0]!);
  const one = await launch(1);
  t.is(one.run.code, 0, one.run.stdout);
  const block = formatCidr((await ipam.hostBlocks('contain-1')).find((c) => c.version === 4)!);
  await waitFor('host 0 to route host 1\'s new block', async () => (await routesOf(state.agents[0]!)).includes(block), 10_000);
  t.false(before.includes(block));

  // Host 0 allocates, and its GC collects a task that vanished, past its own unreadable endpoint.
  const [kept, gone] = [await launch(0), await launch(0)];
  t.deepEqual([kept.run.code, gone.run.code], [0, 0]);
  await state.agents[0]!.vanish(gone.id);
  await waitFor('GC to collect the vanished task', async () => (await ipam.ownerOf(parseAddress(gone.ip!))) === undefined, 15_000);
  t.truthy(await ipam.ownerOf(parseAddress(kept.ip!)), 'the live task keeps its address');

  // Each key logged, once, naming the field where there is one.
  for (const { key } of [0, 2, 3, 4].map((i) => garbage[i]!)) {
    await waitFor(`the daemon to log ${key}`, () => logged(state.daemons[0]!, key) > 0, 10_000);
  }
  await new Promise((done) => setTimeout(done, 1500));
  t.is(logged(state.daemons[0]!, garbage[4]!.key), 1, 'logged once, however often GC reads it');
  t.is(state.daemons[0]!.stderr.split('\n').filter((line) => line.includes('addresses without an endpoint are not collected')).length, 1, 'said once while it lasts');
  t.regex(state.daemons[0]!.stderr, /key=\S+contain--0-cni-typed-eth0 .*spec\.ipNetworks\S* must be a list of strings/);

  // ipam check: the unreadable records listed, the rest checked, the unreadable endpoint's host not judged.
  const check = await runCalicoctl(['ipam', 'check', '--grace-period', '0'], { ETCD_ENDPOINTS: state.world.fabric.etcd.endpoint, ETCD_PREFIX: state.prefix });
  t.is(check.code, 1);
  t.regex(check.stdout, /Records that cannot be read \(skipped; what they hold is not judged\) \(\d\)/);
  t.notRegex(check.stdout, /Addresses allocated with no endpoint/, 'no leak claimed on a guess');

  for (const [i, task] of [[1, one], [0, kept]] as const) for (const r of await state.agents[i]!.destroy(task.id)) t.is(r.code, 0, r.stdout);
});

test.serial('containment - a pool written a moment ago is usable through the daemon at once', async (t) => {
  // The daemon has a cached view of this host from an earlier ADD.
  const warm = await launch(0);
  t.is(warm.run.code, 0);
  for (let round = 0; round < 3; round++) {
    const name = `fresh-${round}-${randomUUID().slice(0, 6)}`;
    await state.ipam.createPool(name, { cidr: `10.19${round}.0.0/24`, blockSize: 28 });
    const task = await launch(0, { ipam: { type: 'calico-ipam', ipv4_pools: [name] } });
    t.is(task.run.code, 0, task.run.stdout);
    t.true(task.ip!.startsWith(`10.19${round}.0.`));
    for (const r of await state.agents[0]!.destroy(task.id)) t.is(r.code, 0);
  }
  for (const r of await state.agents[0]!.destroy(warm.id)) t.is(r.code, 0);
});

test.serial('containment - 200 ADDs into namespaces that already send all succeed', async (t) => {
  const agent = state.agents[1]!;
  let failures: string[] = [];
  const ids: string[] = [];
  for (let batch = 0; batch < 10; batch++) {
    const results = await Promise.all(Array.from({ length: 20 }, async () => {
      const id = randomUUID();
      ids.push(id);
      const netns = await agent.createContainer(id);
      // Sending before, during and after the ADD: the default route makes a neighbour entry at once.
      const sending = packets(netns.path, ['flood', '10.180.0.1', 1.5]).catch(() => undefined);
      await new Promise((done) => setTimeout(done, 50));
      const launched = await agent.launch(id, [{ network: network(1) }]);
      await sending;
      return launched.runs[0]!;
    }));
    failures = [...failures, ...results.filter((r) => r.code !== 0).map((r) => r.stdout)];
  }
  t.deepEqual(failures, [], 'every ADD succeeded');
  for (const id of ids) for (const r of await agent.destroy(id)) t.is(r.code, 0, r.stdout);
});

test.serial('containment - a daemon elsewhere with a taken node name does not start; the rightful one writes its Node\'s address back within 5 s', async (t) => {
  const intruder = spawnSync('nsenter', [`--net=${state.agents[1]!.host.path}`, resolve('dist/bin/calico-libnetwork'),
    '--etcd-endpoints', state.world.fabric.hostEndpoints, '--etcd-prefix', state.prefix, '--nodename', 'contain-0',
    '--cni-socket', join(state.daemons[1]!.dir, 'intruder.sock'), '--plugin-dir', join(state.daemons[1]!.dir, 'intruder-plugins'), '--metrics-address', ''], { encoding: 'utf8', timeout: 20_000 });
  t.not(intruder.status, 0);
  t.regex(intruder.stderr, /node name "contain-0" is held by the daemon at 10\.99\.0\.11/);

  // Someone rewrites the Node's address anyway: the rightful daemon puts it back.
  const node = (await state.ds.resources.get('Node', 'contain-0'))!;
  await state.ds.resources.update({ ...node, spec: { ...node.spec, bgp: { ...node.spec.bgp, ipv4Address: '10.99.0.12/24' } } });
  const changedAt = Date.now();
  await waitFor('the Node\'s address to be written back', async () => (await state.ds.resources.get('Node', 'contain-0'))?.spec.bgp?.ipv4Address === '10.99.0.11/24', 5000);
  t.log(`written back ${Date.now() - changedAt} ms after the change`);

  // A restarted daemon on its own host takes its name back at once.
  await state.daemons[0]!.stop('SIGKILL');
  state.daemons[0] = await NodeDaemon.start(state.agents[0]!.host, ['--etcd-endpoints', state.world.fabric.hostEndpoints, '--etcd-prefix', state.prefix, '--nodename', 'contain-0', '--gc-interval', '0.5', '--gc-grace', '1', '--metrics-address', '']);
  await new Promise((done) => setTimeout(done, 2500));
  t.notRegex(state.daemons[0]!.stderr, /is held by/);
});
