import test from 'ava';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { listNftTable } from '../../shared/dataplane/nftables';
import { Datastore, etcdSettingsFrom } from '../../shared/datastore';
import { NodeDaemon } from '../../sim/daemon';
import type { EtcdServer } from '../../sim/etcd';
import { waitFor } from '../../sim/wait';
import { callDriver } from '../../sim/driver-client';
import type { PluginRun } from '../../sim/cni-exec';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';

const run = promisify(execFile);
let world: CniWorld;
const daemons: NodeDaemon[] = [];

test.before(async () => {
  world = await CniWorld.create({ etcdMembers: 3 });
});
test.after.always(async () => {
  for (const d of daemons) await d.destroy();
  await world?.destroy();
});

const ipamCheck = (prefix: string) =>
  run(resolve('dist/bin/calicoctl'), ['ipam', 'check', '--grace-period', '0'], {
    env: { PATH: process.env.PATH, ETCD_ENDPOINTS: world.fabric.members.map((m) => m.endpoint).join(','), ETCD_PREFIX: prefix },
  }).then((r) => ({ code: 0, out: r.stdout }), (err: { code: number; stdout: string; stderr: string }) => ({ code: err.code, out: `${err.stdout}${err.stderr}` }));

test.serial('resilience - a member of a 3-member etcd killed during 200 ADDs: each succeeds or fails cleanly, none twice, no leak after the failed ones are deleted', async (t) => {
  const { prefix, ds } = await world.scenario('member-down');
  const agent = await world.addAgent();
  const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'agent-r', '--no-routes', '--gc-interval', '0']);
  daemons.push(daemon);
  const viaDaemon = world.network('net', prefix, 'agent-r', { daemon_socket: daemon.cniSocket, etcd_timeout_ms: 2000 });
  const standalone = { ...viaDaemon, daemon_socket: '' };
  const results: { id: string; run: PluginRun }[] = [];
  let next = 0;
  const worker = async () => {
    while (next < 200) {
      const i = next++;
      const id = randomUUID();
      // Mostly through the daemon, as the README recommends; every tenth ADD on its own.
      const launch = await agent.launch(id, [{ network: i % 10 === 0 ? standalone : viaDaemon }]);
      results.push({ id, run: launch.runs[0]! });
    }
  };
  const workers = Array.from({ length: 6 }, worker);
  while (results.length < 60) await sleep(20);
  await world.fabric.members[1]!.stop('SIGKILL');
  await Promise.all(workers);

  const failed = results.filter((r) => r.run.code !== 0);
  const succeeded = results.filter((r) => r.run.code === 0);
  t.log(`${succeeded.length} ADDs succeeded, ${failed.length} failed after a member was killed`);
  for (const f of failed) {
    t.true([11, 100, 101, 102].includes(f.run.json?.code), `a clean CNI error, got ${f.run.stdout}`);
    t.false(/\n\s+at /.test(f.run.stdout), 'no stack trace');
  }
  t.true(succeeded.length >= 150, 'two members of three keep the cluster serving');
  const addresses = succeeded.map((r) => r.run.json!.ip4.ip);
  t.is(new Set(addresses).size, addresses.length, 'no address handed out twice');

  for (const f of failed) for (const r of await agent.destroy(f.id)) t.is(r.code, 0, r.stdout);
  const check = await ipamCheck(prefix);
  t.is(check.code, 0, check.out);
  for (let i = 0; i < succeeded.length; i += 8) await Promise.all(succeeded.slice(i, i + 8).map((s) => agent.destroy(s.id)));
  await world.fabric.members[1]!.resume();
  await assertNothingLeft(t, ds, [agent]);
});


test.serial('resilience - every member down: ADD and driver calls fail within the deadline naming the endpoints; after the restart all works, daemon untouched', async (t) => {
  const { prefix, ds } = await world.scenario('all-down');
  const agent = world.agents[0] ?? (await world.addAgent());
  const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'agent-d', '--no-routes', '--gc-interval', '0']);
  daemons.push(daemon);
  const network = world.network('net', prefix, 'agent-d', { daemon_socket: daemon.cniSocket, etcd_timeout_ms: 2000 });
  const before = randomUUID();
  t.is((await agent.launch(before, [{ network }])).runs[0]!.code, 0);

  for (const member of world.fabric.members) await member.stop('SIGKILL');
  const started = Date.now();
  const down = await agent.launch(randomUUID(), [{ network }]);
  t.is(down.runs[0]!.json?.code, 11, down.runs[0]!.stdout);
  t.regex(down.runs[0]!.json?.msg, /etcd at http:\/\/10\.99\.0\.1:2379,http:\/\/10\.99\.0\.1:2389,http:\/\/10\.99\.0\.1:2399 is unavailable/);
  t.true(Date.now() - started < 10_000, `ADD failed after ${Date.now() - started} ms`);
  const driver = await callDriver(daemon.ipamSocket, '/IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4' });
  t.is(driver.status, 500);
  t.regex(String(driver.json.Err), /etcd at .*10\.99\.0\.1:2379.* is unavailable/);
  t.true(driver.ms < 12_000, `the driver call failed after ${driver.ms} ms`);

  await Promise.all(world.fabric.members.map((m) => m.resume()));
  let after: PluginRun | undefined;
  const id = randomUUID();
  for (let i = 0; i < 20; i++) {
    after = (await agent.launch(id, [{ network }])).runs[0]!;
    if (after.code === 0) break;
    await agent.destroy(id);
    await sleep(500);
  }
  t.is(after?.code, 0, `ADD works again through the same daemon: ${after?.stdout}`);
  for (const x of [before, id]) for (const r of await agent.destroy(x)) t.is(r.code, 0);
  await assertNothingLeft(t, ds, [agent]);
});

/**
 * Each member in turn cut off (`cut`) while a daemon runs: a change written through the others
 * meanwhile is programmed, whichever member the daemon's watch was on.
 */
const followsChangesWhileEachMemberIs = test.macro(async (t, label: string, cut: (member: EtcdServer) => Promise<void>) => {
  const { prefix } = await world.scenario(`member-${label}`);
  const agent = world.agents[0] ?? (await world.addAgent());
  const node = `agent-${label}`;
  const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', node, '--no-routes', '--gc-interval', '0']);
  daemons.push(daemon);
  await waitFor('the policy table', async () => (await listNftTable('inet calico', { netns: agent.host.path })) !== undefined, 10_000);
  for (const [i, member] of world.fabric.members.entries()) {
    // The test writes through the members that stay (its own client would wait on the cut one).
    const others = world.fabric.members.filter((m) => m !== member).map((m) => m.endpoint).join(',');
    const writer = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: others }, {}), prefix });
    await cut(member);
    try {
      const iface = `cali${label}${i}`;
      const name = `${node.replace('-', '--')}-cni-${label}${i}-eth0`;
      const started = Date.now();
      // Tried until the others have elected a leader, if the cut member led.
      await waitFor(`the record of ${iface} written`, () => writer.resources.create({
        kind: 'WorkloadEndpoint', apiVersion: 'projectcalico.org/v3', metadata: { name, namespace: 'default' },
        spec: { orchestrator: 'cni', node, endpoint: 'eth0', ipNetworks: [`10.95.9.${i + 1}/32`], profiles: ['net'], interfaceName: iface },
      }).then(() => true, () => writer.resources.get('WorkloadEndpoint', name, 'default').then((found) => found !== undefined, () => false)), 20_000, 500);
      await waitFor(`${iface} programmed while member ${i} is ${label}`, async () => (await listNftTable('inet calico', { netns: agent.host.path }))?.includes(`"${iface}"`) === true, 25_000, 200);
      t.log(`member ${i} ${label}: the change was programmed ${Date.now() - started} ms after it was first tried`);
    } finally {
      await world.fabric.reconnect(member);
      writer.close();
    }
  }
  await daemon.destroy();
  t.pass();
});

test.serial('resilience - each member in turn cut off (silent: nothing answered, nothing refused): the daemon follows a change made meanwhile, whichever member its watch was on',
  followsChangesWhileEachMemberIs, 'cut', (member) => world.fabric.cutOff(member));

test.serial('resilience - each member in turn cut off from the others only (it answers clients, but has no leader): the daemon follows a change made meanwhile, whichever member its watch was on',
  followsChangesWhileEachMemberIs, 'apart', (member) => world.fabric.cutFromPeers(member));
