import test from 'ava';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { handleOf, hostVethName, newDockerHandle } from '../../shared/endpoints/identity';
import { parseAddress } from '../../shared/net/address';
import { HOST_PATH, runPlugin, type PluginRun } from '../../sim/cni-exec';
import { NodeDaemon } from '../../sim/daemon';
import { callDriver } from '../../sim/driver-client';
import { runCalicoctl } from '../../sim/calicoctl';
import { assertNothingLeft, useCniWorld } from '../helpers/cni-world';
import { readIpamState } from '../helpers/ipam-state';
import { waitFor } from '../../sim/wait';

const setup = useCniWorld(test);
const NODE = 'agent-own';

function call(command: string, id: string, conf: object, extraEnv: Record<string, string> = {}): Promise<PluginRun> {
  const env = { ...setup.agent.env(command, id, extraEnv.CNI_IFNAME ?? 'eth0'), ...extraEnv };
  return runPlugin(setup.agent.host, join(setup.world.pluginsDir, 'calico'), env, JSON.stringify(conf));
}

const addressOf = (run: PluginRun) => String(run.json!.ips[0].address).split('/')[0]!;

test.serial('ownership - CNI GC of a network never touches a network whose name it prefixes, nor Docker\'s addresses', async (t) => {
  const { prefix, ds, ipam } = await setup.world.scenario('gc-prefix');
  const conf = (name: string) => ({ ...setup.world.network(name, prefix, NODE, { daemon_socket: '' }), cniVersion: '1.1.0' });
  const [mine, prod] = [randomUUID(), randomUUID()];
  for (const id of [mine, prod]) await setup.agent.createContainer(id);
  t.is((await call('ADD', mine, conf('calico'))).code, 0);
  const prodAdd = await call('ADD', prod, conf('calico.prod'));
  t.is(prodAdd.code, 0, prodAdd.stdout);
  // A Docker address of this host, and a network that happens to be called "libnetwork".
  const docker = await ipam.autoAssign({ handle: newDockerHandle(), node: NODE, num4: 1, num6: 0, attributes: { orchestrator: 'libnetwork' } });
  const gc = (name: string, valid: object[]) => runPlugin(setup.agent.host, join(setup.world.pluginsDir, 'calico'), { CNI_COMMAND: 'GC', CNI_PATH: setup.world.pluginsDir, PATH: HOST_PATH },
    JSON.stringify({ ...conf(name), 'cni.dev/valid-attachments': valid }));
  t.is((await gc('calico', [{ containerID: mine, ifname: 'eth0' }])).code, 0);
  t.is((await gc('libnetwork', [])).code, 0);
  const state = await readIpamState(ds);
  t.is(state.allocated.get(addressOf(prodAdd)), handleOf({ orchestrator: 'cni', node: NODE, network: 'calico.prod', containerId: prod, ifname: 'eth0' }), 'calico.prod\'s task keeps its address');
  t.truthy(await ipam.ownerOf(docker.ipv4[0]!), 'the Docker address stays');
  t.true((await setup.agent.host.json<{ ifname: string }[]>('link', 'show')).some((l) => l.ifname === hostVethName({ orchestrator: 'cni', node: NODE, network: 'calico.prod', containerId: prod, ifname: 'eth0' })));
  t.is((await gc('calico.prod', [])).code, 0, 'its own GC does collect it');
  t.falsy(await ipam.ownerOf(parseAddress(addressOf(prodAdd))));
  t.is((await call('DEL', mine, conf('calico'))).code, 0);
  await ipam.release(docker.ipv4, () => true);
  for (const id of [mine, prod]) await setup.agent.destroy(id);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('ownership - network a with container b.c and network a.b with container c: a DEL of one never frees the other\'s address', async (t) => {
  const { prefix, ds } = await setup.world.scenario('handles');
  const conf = (name: string) => ({ ...setup.world.network(name, prefix, NODE, { daemon_socket: '' }), cniVersion: '1.0.0' });
  const bc = `b.c-${randomUUID().slice(0, 8)}`;
  const [first, second] = [{ net: 'a', id: bc }, { net: 'a.b', id: bc.slice(2) }];
  t.is(`${first.net}.${first.id}`, `${second.net}.${second.id}`, 'Calico\'s handles would be one and the same');
  for (const w of [first, second]) await setup.agent.createContainer(w.id);
  const added = await Promise.all([first, second].map((w) => call('ADD', w.id, conf(w.net))));
  t.deepEqual(added.map((r) => r.code), [0, 0]);
  t.is((await call('DEL', first.id, conf(first.net))).code, 0);
  const state = await readIpamState(ds);
  t.deepEqual([...state.allocated.keys()], [addressOf(added[1]!)], 'the other\'s address is still allocated');
  // Nobody can take it: it is in use.
  const thief = randomUUID();
  await setup.agent.createContainer(thief);
  const taken = await call('ADD', thief, conf('a'), { CNI_ARGS: `IP=${addressOf(added[1]!)}` });
  t.is(taken.json?.code, 7);
  t.regex(taken.json?.msg ?? '', /already in use/);
  t.true((await setup.agent.host.json<{ ifname: string }[]>('link', 'show')).some((l) => l.ifname === hostVethName({ orchestrator: 'cni', node: NODE, network: second.net, containerId: second.id, ifname: 'eth0' })), 'and its veth');
  t.is((await call('DEL', second.id, conf(second.net))).code, 0);
  for (const id of [first.id, second.id, thief]) await setup.agent.destroy(id);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('ownership - two container IDs sharing their first 11 characters get veths of their own, both wired, reaching each other', async (t) => {
  const { prefix, ds } = await setup.world.scenario('veths');
  const conf = { ...setup.world.network('net', prefix, NODE, { daemon_socket: '' }), cniVersion: '1.0.0' };
  const common = randomUUID().replace(/-/g, '').slice(0, 11);
  const [a, b] = [`${common}aaaa`, `${common}bbbb`];
  for (const id of [a, b]) await setup.agent.createContainer(id);
  const runs = [await call('ADD', a, conf), await call('ADD', b, conf)];
  t.deepEqual(runs.map((r) => r.code), [0, 0], runs.map((r) => r.stdout).join('\n'));
  t.true(await setup.agent.container(a).ping(addressOf(runs[1]!)));
  t.true(await setup.agent.container(b).ping(addressOf(runs[0]!)));
  for (const id of [a, b]) t.is((await call('DEL', id, conf)).code, 0);
  for (const id of [a, b]) await setup.agent.destroy(id);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('ownership - interface names ip would misread, a 10 kB container ID, a forged log line: refused with code 4, and their DEL succeeds', async (t) => {
  const { prefix, ds } = await setup.world.scenario('names');
  const logFile = join(setup.world.logDir, 'names.log');
  const conf = { ...setup.world.network('net', prefix, NODE, { daemon_socket: '', log_file_path: logFile }), cniVersion: '1.0.0' };
  const id = randomUUID();
  await setup.agent.createContainer(id);
  for (const ifname of ['help', 'type', 'dev', 'netns', 'name', 'link', 'up', 'mtu', 'alias', '-x', '--help']) {
    const add = await call('ADD', id, conf, { CNI_IFNAME: ifname });
    t.is(add.json?.code, 4, `ADD ${ifname}: ${add.stdout}`);
    t.regex(add.json?.msg ?? '', /CNI_IFNAME/);
    t.is((await call('DEL', id, conf, { CNI_IFNAME: ifname })).code, 0, `DEL ${ifname} succeeds`);
  }
  const long = 'a'.repeat(10_000);
  const add = await call('ADD', long, conf, { CNI_NETNS: setup.agent.netnsPath(id) });
  t.is(add.json?.code, 4);
  t.regex(add.json?.msg ?? '', /CNI_CONTAINERID: it is 10000 characters long/);
  t.is((await call('DEL', long, conf)).code, 0, 'DEL of a 10 kB ID succeeds');

  const forged = `${id}\n2026-01-01T00:00:00.000Z [INFO][1] workload deleted endpoint=everything`;
  const bad = await call('ADD', forged, conf, { CNI_NETNS: setup.agent.netnsPath(id) });
  t.is(bad.json?.code, 4);
  // Refused before the config is read, so the line goes to stderr; anything after, to the file as well.
  const lines = [existsSync(logFile) ? readFileSync(logFile, 'utf8') : '', bad.stderr].join('\n').split('\n');
  t.false(lines.some((l) => l.startsWith('2026-01-01T00:00:00.000Z')), 'no input starts a log line of its own');
  t.true(lines.some((l) => l.includes('\\u000a2026-01-01T00:00:00.000Z')), 'the newline is written escaped');
  await setup.agent.destroy(id);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('ownership - two non-ethN interfaces of one container both attach, with routes of their own', async (t) => {
  const { prefix, ds } = await setup.world.scenario('dbg');
  const conf = (name: string) => ({ ...setup.world.network(name, prefix, NODE, { daemon_socket: '' }), cniVersion: '1.0.0' });
  const id = randomUUID();
  await setup.agent.createContainer(id);
  const runs = await Promise.all([['net-a', 'dbg0'], ['net-b', 'dbg1']].map(([net, ifname]) => call('ADD', id, conf(net!), { CNI_IFNAME: ifname! })));
  t.deepEqual(runs.map((r) => r.code), [0, 0], runs.map((r) => r.stdout).join('\n'));
  const routes = await setup.agent.container(id).json<{ dst: string; dev: string; metric?: number }[]>('route', 'show', 'default');
  t.is(routes.length, 2);
  t.not(routes[0]!.metric, routes[1]!.metric);
  for (const [net, ifname] of [['net-a', 'dbg0'], ['net-b', 'dbg1']]) t.is((await call('DEL', id, conf(net!), { CNI_IFNAME: ifname! })).code, 0);
  await setup.agent.destroy(id);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('ownership - a pool given as a CIDR in ipv4_pools serves a requested IP= as it serves automatic assignment', async (t) => {
  const { prefix, ds } = await setup.world.scenario('pool-cidr', { v4: '10.201.0.0/16' });
  const conf = { ...setup.world.network('net', prefix, NODE, { daemon_socket: '' }), cniVersion: '1.0.0', ipam: { type: 'calico-ipam', ipv4_pools: ['10.201.0.0/16'] } };
  const [auto, fixed] = [randomUUID(), randomUUID()];
  for (const id of [auto, fixed]) await setup.agent.createContainer(id);
  t.is((await call('ADD', auto, conf)).code, 0);
  const requested = await call('ADD', fixed, conf, { CNI_ARGS: 'IP=10.201.77.7' });
  t.is(requested.code, 0, requested.stdout);
  t.is(addressOf(requested), '10.201.77.7');
  for (const id of [auto, fixed]) t.is((await call('DEL', id, conf)).code, 0);
  for (const id of [auto, fixed]) await setup.agent.destroy(id);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('ownership - Docker\'s ReleaseAddress frees only what this host\'s driver handed out; slow requests are cut off on every socket', async (t) => {
  const { prefix, ds } = await setup.world.scenario('docker-release');
  const daemon = await NodeDaemon.start(setup.agent.host, ['--etcd-endpoints', setup.world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', NODE, '--no-routes', '--gc-interval', '0', '--metrics-address', '']);
  t.teardown(() => daemon.destroy());
  const conf = { ...setup.world.network('net', prefix, NODE, { daemon_socket: daemon.cniSocket }), cniVersion: '1.0.0' };
  const id = randomUUID();
  await setup.agent.createContainer(id);
  const add = await call('ADD', id, conf);
  t.is(add.code, 0);
  const released = await callDriver(daemon.ipamSocket, '/IpamDriver.ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: addressOf(add) });
  t.is(released.status, 200, 'Docker hears success (it releases its dummy gateway too)');
  // The daemon's log is written off its event loop: it may follow the answer by a moment.
  await waitFor('the daemon saying why it did nothing', () => daemon.stderr.includes('not releasing an address Docker did not get'), 5000);
  t.truthy(await (await setup.world.datastore(prefix)).ipam.ownerOf(parseAddress(addressOf(add))), 'the CNI task keeps its address');
  const dockers = await callDriver(daemon.ipamSocket, '/IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4' });
  t.is((await callDriver(daemon.ipamSocket, '/IpamDriver.ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: String(dockers.json.Address) })).status, 200);
  t.false((await readIpamState(ds)).allocated.has(String(dockers.json.Address).split('/')[0]!), 'its own it frees');

  // A client that sends half a request and waits: dropped on both kinds of socket.
  const hangs = (path: string, partial: string) => new Promise<number>((resolve) => {
    const started = Date.now();
    const socket = connect(path, () => socket.write(partial));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Date.now() - started));
    setTimeout(() => socket.destroy(), 60_000);
  });
  const [driver, cni] = await Promise.all([
    hangs(daemon.ipamSocket, 'POST /IpamDriver.RequestAddress HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"Pool'),
    hangs(daemon.cniSocket, '{"kind":"calico","env":{'),
  ]);
  t.true(driver < 20_000 && cni < 20_000, `closed after ${driver} and ${cni} ms`);
  t.is((await call('DEL', id, conf)).code, 0, 'the daemon still serves');
  await setup.agent.destroy(id);
  await assertNothingLeft(t, ds, [setup.agent]);
});

test.serial('ownership - a pool overlapping a registered host\'s subnet is refused', async (t) => {
  const { prefix, ds } = await setup.world.scenario('overlap', { v4: '10.202.0.0/16' });
  await ds.resources.create({ kind: 'Node', apiVersion: 'projectcalico.org/v3', metadata: { name: 'agent-x' }, spec: { bgp: { ipv4Address: '10.99.0.11/24' } } });
  const ctl = (...args: string[]) => runCalicoctl(args, { ETCD_ENDPOINTS: setup.world.fabric.etcd.endpoint, ETCD_PREFIX: prefix });
  const refused = await ctl('pool', 'add', '10.99.0.0/16');
  t.is(refused.code, 1);
  t.regex(refused.stderr, /overlaps host agent-x's subnet 10\.99\.0\.0\/24/);
  t.is((await ctl('pool', 'add', '10.98.0.0/16')).code, 0, 'one beside it is fine');
});

test('ownership - every executable answers --help with its usage, an unknown flag with usage and exit 2', async (t) => {
  const { execFile } = await import('node:child_process');
  const run = (file: string, args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(file, args, { env: { PATH: HOST_PATH }, timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
  for (const exe of ['dist/bin/calico-libnetwork', 'dist/bin/calicoctl', 'dist/bin/calico-install']) {
    for (const flag of ['--help', '-h']) {
      const help = await run(exe, [flag]);
      t.is(help.code, 0, `${exe} ${flag}: ${help.stderr}`);
      t.regex(help.stdout, /usage/i);
    }
    const unknown = await run(exe, ['--no-such-flag']);
    t.is(unknown.code, 2, `${exe} --no-such-flag`);
    t.regex(unknown.stderr, /usage/i);
  }
  // calico_mesos speaks on stdout to the isolator: a stray argument is refused there as JSON too.
  for (const flag of ['--help', '-h']) t.regex((await run('dist/bin/calico_mesos', [flag])).stdout, /^usage: calico_mesos/);
  const stray = await run('dist/bin/calico_mesos', ['--no-such-flag']);
  t.is(stray.code, 2);
  t.regex(stray.stderr, /usage/i);
  t.regex(JSON.parse(stray.stdout).error, /takes no arguments/);
});
