import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { NFT } from '../../shared/dataplane/nftables';
import { encodeResource } from '../../shared/datastore';
import { OWNER_ANNOTATION } from '../../shared/endpoints/workload-endpoint';
import { assertNothingLeft, useCniWorld } from '../helpers/cni-world';
import { readIpamState } from '../helpers/ipam-state';
import { NodeDaemon } from '../../sim/daemon';
import { waitFor } from '../../sim/wait';

const setup = useCniWorld(test);

/** A daemon on the agent for `prefix` (no routes, no metrics port), destroyed after the test, and the network reaching it. */
async function quietDaemon(t: ExecutionContext, prefix: string) {
  const daemon = await NodeDaemon.start(setup.agent.host, ['--etcd-endpoints', setup.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'agent1', '--no-routes', '--metrics-address', '']);
  t.teardown(() => daemon.destroy());
  return { daemon, network: setup.world.network('calico', prefix, 'agent1', { daemon_socket: daemon.cniSocket }) };
}

test.serial('cni daemon - plugins forward to the node daemon; it wires the task in the agent\'s namespace', async (t) => {
  const { prefix, ds } = await setup.world.scenario('daemon');
  const daemon = await NodeDaemon.start(setup.agent.host, ['--log-level', 'debug', '--etcd-endpoints', setup.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'agent1']);
  t.teardown(() => daemon.destroy());
  const network = setup.world.network('calico', prefix, 'agent1', { daemon_socket: daemon.cniSocket });
  const [a, b] = [randomUUID(), randomUUID()];
  const launchA = await setup.agent.launch(a, [{ network }]);
  const launchB = await setup.agent.launch(b, [{ network }]);
  t.is(launchA.runs[0]!.code, 0, launchA.runs[0]!.stdout);
  // The daemon's log is written off its event loop: it may follow the answer by a moment.
  await waitFor('the daemon logging the work', () => daemon.stderr.includes('workload added'), 5000);
  // Closed until the daemon has programmed both endpoints, tens of milliseconds after their records.
  await waitFor('task a to reach task b', () => setup.agent.container(a).ping(launchB.ips[0]!.ip4!.split('/')[0]!), 5000);
  for (const id of [a, b]) for (const r of await setup.agent.destroy(id)) t.is(r.code, 0, r.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni daemon - with the daemon gone, the plugins do the work themselves', async (t) => {
  const { prefix, ds } = await setup.world.scenario('fallback');
  // A host without policy: a new workload would otherwise wait, closed, for a daemon to program it.
  const daemon = await NodeDaemon.start(setup.agent.host, ['--etcd-endpoints', setup.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'agent1', '--no-policy']);
  const network = setup.world.network('calico', prefix, 'agent1', { daemon_socket: daemon.cniSocket });
  const id = randomUUID();
  t.is((await setup.agent.launch(id, [{ network }])).runs[0]!.code, 0);
  await daemon.stop('SIGKILL'); // a crash leaves the socket file behind
  t.true(existsSync(daemon.cniSocket));
  const other = randomUUID();
  const launch = await setup.agent.launch(other, [{ network }]);
  t.is(launch.runs[0]!.code, 0, launch.runs[0]!.stdout);
  t.true(await setup.agent.container(other).ping((await ds.resources.list('WorkloadEndpoint')).find((e) => e.spec.containerID === id)!.spec.ipNetworks[0]!.split('/')[0]!));
  for (const x of [id, other]) for (const r of await setup.agent.destroy(x)) t.is(r.code, 0, r.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);
  await daemon.destroy();
});

test.serial('cni daemon - the plugin SIGKILLed with its process group mid-ADD and mid-DEL (the soak\'s fault): the runtime\'s DELs leave nothing', async (t) => {
  const { prefix, ds } = await setup.world.scenario('killed');
  const { network } = await quietDaemon(t, prefix);
  const struck: string[] = [];
  // From before the front has read its input to after the daemon has answered.
  for (const afterMs of [1, 5, 10, 15, 20, 30]) {
    const id = randomUUID();
    const addKill = setup.agent.killNextPlugin('ADD', afterMs, 5000);
    await setup.agent.launch(id, [{ network }]);
    const delKill = setup.agent.killNextPlugin('DEL', afterMs, 5000);
    await setup.agent.del(id);
    struck.push(`${afterMs} ms: ADD ${(await addKill) ? 'killed' : 'finished'}, DEL ${(await delKill) ? 'killed' : 'finished'}`);
    // Mesos sends a failed DEL again until it succeeds.
    for (const r of await setup.agent.destroy(id)) t.is(r.code, 0, r.stdout);
  }
  t.log(struck.join('; '));
  t.regex(struck[0]!, /ADD killed, DEL killed/, 'a kill 1 ms in strikes mid-command');
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni daemon - a DEL\'s veth deletion runs in the background: an ADD of the same container right after finds its interface name free; a stop after a DEL leaves no link', async (t) => {
  const { prefix, ds } = await setup.world.scenario('background');
  const { daemon, network } = await quietDaemon(t, prefix);
  const id = randomUUID();
  const links = async () => (await setup.agent.host.json<{ ifname: string }[]>('link', 'show')).map((l) => l.ifname).filter((n) => n.startsWith('cali'));
  for (let round = 0; round < 3; round++) {
    const launch = await setup.agent.launch(id, [{ network }]);
    t.is(launch.runs[0]!.code, 0, `ADD ${round}: ${launch.runs[0]!.stdout}`);
    for (const r of await setup.agent.del(id)) t.is(r.code, 0, r.stdout);
  }
  // The container and its namespace stay: only the daemon's deletion removes the last veth.
  await daemon.stop('SIGTERM');
  t.deepEqual(await links(), [], 'the daemon deleted it before it exited');
  await setup.agent.forget(id);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni daemon - a DEL frees the addresses and deletes the record in one transaction; a record changed behind the daemon\'s back is judged as it is: another\'s stays, one that cannot be read fails the DEL naming its key; the addresses and the veth go either way', async (t) => {
  const { prefix, ds } = await setup.world.scenario('del-record');
  const { network } = await quietDaemon(t, prefix);
  const [plain, taken, garbled] = [randomUUID(), randomUUID(), randomUUID()];
  for (const id of [plain, taken, garbled]) t.is((await setup.agent.launch(id, [{ network }])).runs[0]!.code, 0);
  const records = await ds.resources.list('WorkloadEndpoint');
  const recordOf = (id: string) => records.find((r) => r.spec.containerID === id)!;
  const keyOf = (id: string) => ds.resources.keyOf('WorkloadEndpoint', recordOf(id).metadata.name, recordOf(id).metadata.namespace);
  const handlesLeft = async () => [...(await readIpamState(ds)).handles.keys()];
  const links = async () => (await setup.agent.host.json<{ ifname: string }[]>('link', 'show')).map((l) => l.ifname);

  for (const r of await setup.agent.destroy(plain)) t.is(r.code, 0, r.stdout);
  const block = (await ds.kv.list(ds.keys.blockPrefix(4)))[0]!;
  const recordAt = async (revision: bigint) => (await ds.kv.list(keyOf(plain), { revision: String(revision) })).length;
  t.deepEqual([await recordAt(BigInt(block.modRevision) - 1n), await recordAt(BigInt(block.modRevision))], [1, 0], 'the record went in the transaction that freed the address');

  // Behind the daemon's back: one record now names another owner, one is garbage.
  const another = { ...recordOf(taken), metadata: { ...recordOf(taken).metadata, annotations: { ...recordOf(taken).metadata.annotations, [OWNER_ANNOTATION]: 'cni|agent1|calico|someone-else|eth0' } } };
  await ds.kv.txn([{ key: keyOf(taken), put: encodeResource(another) }, { key: keyOf(garbled), put: '{garbage' }]);
  for (const r of await setup.agent.destroy(taken)) t.is(r.code, 0, r.stdout);
  t.is((await ds.kv.get(keyOf(taken)))?.value, encodeResource(another), 'another\'s record stays');
  const [failed] = await setup.agent.del(garbled);
  t.is(failed!.code, 1);
  t.true(failed!.json?.msg.includes(keyOf(garbled)), failed!.stdout);
  t.is((await ds.kv.get(keyOf(garbled)))?.value, '{garbage', 'a record that cannot be read is not judged');
  t.deepEqual(await handlesLeft(), [], 'both DELs freed their addresses');
  t.false((await links()).includes(recordOf(garbled).spec.interfaceName), 'and removed the veth');

  // Once the operator removes it, the runtime's next DEL succeeds.
  await ds.kv.txn([{ key: keyOf(garbled), delete: true }, { key: keyOf(taken), delete: true }]);
  for (const r of await setup.agent.destroy(garbled)) t.is(r.code, 0, r.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('cni daemon - SIGTERM finishes and removes its socket; a restart replaces a stale socket', async (t) => {
  const first = await NodeDaemon.start(setup.agent.host);
  await first.stop('SIGTERM');
  t.false(existsSync(first.cniSocket), 'a clean stop removes the socket');
  await first.destroy();
  const crashed = await NodeDaemon.start(setup.agent.host);
  await crashed.stop('SIGKILL');
  t.true(existsSync(crashed.cniSocket));
  // A new daemon on the same path takes over the stale file.
  const { spawnSync } = await import('node:child_process');
  const again = spawnSync('nsenter', [`--net=${setup.agent.host.path}`, 'timeout', '2', 'dist/bin/calico-libnetwork', '--cni-socket', crashed.cniSocket, '--plugin-dir', join(crashed.dir, 'plugins'), '--no-routes', '--metrics-address', ''], { encoding: 'utf8' });
  t.regex(again.stderr, /serving CNI requests/);
  await crashed.destroy();
});

test.serial('cni daemon - under systemd (Type=notify) it says it is ready once it listens, with the policy table in place', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'notify.sock');
  const listener = spawn('socat', ['-u', `UNIX-RECVFROM:${socket}`, '-'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => listener.kill('SIGKILL'));
  let heard = '';
  listener.stdout!.on('data', (d) => (heard += d));
  await waitFor('socat to listen', () => existsSync(socket), 5000);
  const daemon = spawn('nsenter', [`--net=${setup.agent.host.path}`, resolve('dist/bin/calico-libnetwork'), '--cni-socket', join(dir, 'cni.sock'), '--plugin-dir', join(dir, 'plugins'), '--no-routes', '--metrics-address', '', '--nodename', 'notify'], { env: { ...process.env, NOTIFY_SOCKET: socket }, stdio: 'ignore' });
  t.teardown(() => daemon.kill('SIGKILL'));
  await waitFor('READY=1', () => heard.includes('READY=1'), 10_000);
  t.true(existsSync(join(dir, 'cni.sock')), 'it listened before it said so');
  t.regex((await setup.agent.host.exec(NFT, ['list', 'chain', 'inet', 'calico', 'wl-guard'])).stdout, /@wl_pfx4 drop/, 'and closed the workloads before');
});

test.serial('cni daemon - a command for another node name is served, with a warning (once) saying to give both the same name; --backend bird without BIRD says so at start', async (t) => {
  const { prefix, ds } = await setup.world.scenario('names');
  const daemon = await NodeDaemon.start(setup.agent.host, ['--etcd-endpoints', setup.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', 'agent1', '--no-routes', '--metrics-address', '']);
  t.teardown(() => daemon.destroy());
  const network = setup.world.network('calico', prefix, 'agent-one', { daemon_socket: daemon.cniSocket });
  const ids = [randomUUID(), randomUUID()];
  for (const id of ids) t.is((await setup.agent.launch(id, [{ network }])).runs[0]!.code, 0);
  await waitFor('the warning', () => daemon.stderr.includes('a command arrived for another node name'), 5000);
  t.is(daemon.stderr.split('\n').filter((l) => l.includes('a command arrived for another node name')).length, 1, 'said once per name');
  t.regex(daemon.stderr, /commandNode=agent-one daemonNode=agent1/);
  for (const id of ids) for (const r of await setup.agent.destroy(id)) t.is(r.code, 0, r.stdout);
  await assertNothingLeft(t, ds, [setup.agent]);

  // A mount namespace of its own in which /usr/sbin holds no bird (nothing else changes).
  const dir = mkdtempSync(join(tmpdir(), 'nobird-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = `mount -t tmpfs tmpfs /usr/sbin && exec nsenter --net=${setup.agent.host.path} timeout 5 ${resolve('dist/bin/calico-libnetwork')} --backend bird --cni-socket ${join(dir, 'cni.sock')} --plugin-dir ${join(dir, 'plugins')} --bird-dir ${join(dir, 'bird')} --mtu-file ${join(dir, 'mtu')} --no-policy --metrics-address '' --nodename nobird --etcd-endpoints ${setup.world.fabric.hostEndpoints} --etcd-prefix ${prefix}`;
  const { spawnSync } = await import('node:child_process');
  const run = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { encoding: 'utf8', timeout: 20_000 });
  t.regex(run.stderr, /BIRD 2 is not installed \(no \/usr\/sbin\/bird\): install Debian's bird2 for --backend bird; until it is, this host neither learns nor announces routes/);
});
