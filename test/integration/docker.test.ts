import test from 'ava';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { assertNothingLeft } from '../helpers/cni-world';
import { useDockerAgent } from '../helpers/docker-world';
import { readIpamState } from '../helpers/ipam-state';
import { callDriver } from '../../sim/driver-client';
import { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { parseAddress } from '../../shared/net';
import { NETNS_ANNOTATION } from '../../shared/endpoints/workload-endpoint';

const setup = useDockerAgent(test, { host: 'dock', scenario: 'docker', pools: { v4: '10.220.0.0/16', v6: 'fd00:220::/64' }, node: 'docker-agent-1', shownLog: /ERROR/ });

const ipOf = (container: string, network: string) => setup.agent.networkSetting(container, network, 'IPAddress');

test.serial('docker - calico networks with and without --subnet: containers of a network ping each other, not those of another; --ip is honoured, rm leaves nothing', async (t) => {
  await setup.agent.docker('network', 'create', '-d', setup.driver, '--ipam-driver', setup.ipamDriver, 'net1');
  for (let i = 0; i < 100 && !(await setup.ds.resources.get('Profile', 'net1')); i++) await new Promise((r) => setTimeout(r, 50));
  t.deepEqual((await setup.ds.resources.get('Profile', 'net1'))?.spec.labelsToApply, { 'pcn.net1': '' }, 'creating the network creates its profile');
  // docker run --ip needs a network with a configured subnet: a Calico pool.
  await setup.agent.docker('network', 'create', '-d', setup.driver, '--ipam-driver', setup.ipamDriver, '--subnet', '10.220.0.0/16', 'net2');
  await setup.agent.docker('run', '-d', '--name', 'ca', '--net', 'net1', 'local/busybox', 'sleep', '600');
  await setup.agent.docker('run', '-d', '--name', 'cb', '--net', 'net1', 'local/busybox', 'sleep', '600');
  await setup.agent.docker('run', '-d', '--name', 'cc', '--net', 'net2', '--ip', '10.220.99.9', 'local/busybox', 'sleep', '600');
  const [a, b, c] = [await ipOf('ca', 'net1'), await ipOf('cb', 'net1'), await ipOf('cc', 'net2')];
  t.regex(a, /^10\.220\./);
  t.not(a, b);
  t.is(c, '10.220.99.9');
  t.regex((await setup.agent.docker('exec', 'ca', 'ping', '-c', '1', '-W', '3', b)).stdout, /1 packets received/);
  t.regex((await setup.agent.docker('exec', 'cb', 'ping', '-c', '1', '-W', '3', a)).stdout, /1 packets received/);
  // Another network is isolated from these, both ways (the daemon enforces the profiles).
  await t.throwsAsync(setup.agent.docker('exec', 'cc', 'ping', '-c', '1', '-W', '1', a), undefined, 'net2 does not reach net1');
  await t.throwsAsync(setup.agent.docker('exec', 'ca', 'ping', '-c', '1', '-W', '1', c), undefined, 'net1 does not reach net2');

  const endpoints = await setup.ds.resources.list('WorkloadEndpoint', 'libnetwork');
  t.is(endpoints.length, 3);
  t.deepEqual(endpoints.map((e) => e.spec.profiles[0]).sort(), ['net1', 'net1', 'net2']);
  t.true(endpoints.every((e) => e.spec.orchestrator === 'libnetwork' && e.spec.node === setup.node));
  t.truthy(await setup.ds.resources.get('Profile', 'net1'), 'each network has its own profile');
  t.truthy(await setup.ds.resources.get('Profile', 'net2'));
  const { ipam } = await setup.world.datastore(setup.prefix);
  const owner = await ipam.ownerOf(parseAddress(a));
  t.is(owner?.attributes.orchestrator, 'libnetwork');
  t.truthy(owner?.attributes.endpoint, 'the address records its endpoint');

  // Stopping a container releases its address, veth and record.
  await setup.agent.docker('stop', '-t', '0', 'cb');
  t.is(await ipam.ownerOf(parseAddress(b)), undefined, 'the stopped container\'s address is free');
  t.is((await setup.ds.resources.list('WorkloadEndpoint', 'libnetwork')).length, 2);

  await setup.agent.docker('rm', '-f', 'ca', 'cb', 'cc');
  await setup.agent.docker('network', 'rm', 'net1', 'net2');
  await assertNothingLeft(t, setup.ds, []);
  const links = await setup.agent.host.json<{ ifname: string }[]>('link', 'show');
  t.deepEqual(links.map((l) => l.ifname).filter((n) => n !== 'lo' && n !== 'eth0'), [], 'no veth left');
});

test.serial('docker - a Docker container and a Mesos CNI task on one agent, same network and profile, ping each other', async (t) => {
  await setup.agent.docker('network', 'create', '-d', setup.driver, '--ipam-driver', setup.ipamDriver, 'shared-net');
  await setup.agent.docker('run', '-d', '--name', 'dk', '--net', 'shared-net', 'local/busybox', 'sleep', '600');
  const mesos = new MesosAgent(setup.agent.host, setup.world.pluginsDir);
  const taskId = randomUUID();
  t.teardown(async () => {
    // Whatever a failure midway left is removed, so that it fails no later test.
    await mesos.destroy(taskId).catch(() => undefined);
    await setup.agent.docker('rm', '-f', 'dk').catch(() => undefined);
    await setup.agent.docker('network', 'rm', 'shared-net').catch(() => undefined);
    await mesos.cleanup();
  });
  // The CNI network of the same name, on the same node and datastore.
  const launch = await mesos.launch(taskId, [{ network: setup.world.network('shared-net', setup.prefix, setup.node, { daemon_socket: '' }) }]);
  t.is(launch.runs[0]!.code, 0, launch.runs[0]!.stdout);
  const taskIp = launch.ips[0]!.ip4!.split('/')[0]!;
  const dockerIp = await ipOf('dk', 'shared-net');
  // The task is closed until the daemon has programmed its endpoint and profile, tens of
  // milliseconds after the plugin wrote them (the plugin may answer first).
  await waitFor('the container to reach the task', () => setup.agent.docker('exec', 'dk', 'ping', '-c', '1', '-W', '1', taskIp).then(() => true, () => false), 5000);
  t.true(await mesos.container(taskId).ping(dockerIp));
  const profiles = (await setup.ds.resources.list('WorkloadEndpoint')).map((e) => [e.spec.orchestrator, e.spec.profiles[0]]);
  t.deepEqual(profiles.sort(), [['cni', 'shared-net'], ['libnetwork', 'shared-net']]);
  const { blocks } = await readIpamState((await setup.world.datastore(setup.prefix)).ds);
  t.true(blocks.some((b) => b.affinity === `host:${setup.node}` && b.inUse === 2), 'both drew from the same host block');
  for (const r of await mesos.destroy(taskId)) t.is(r.code, 0);
  await setup.agent.docker('rm', '-f', 'dk');
  await setup.agent.docker('network', 'rm', 'shared-net');
  await assertNothingLeft(t, setup.ds, []);
});

test.serial('docker - the daemon restarted between container starts keeps every network and endpoint working', async (t) => {
  await setup.agent.docker('network', 'create', '-d', setup.driver, '--ipam-driver', setup.ipamDriver, 'restart-net');
  await setup.agent.docker('run', '-d', '--name', 'before', '--net', 'restart-net', 'local/busybox', 'sleep', '600');
  await setup.agent.stopDaemon('SIGKILL');
  await setup.startDaemon();
  await setup.agent.docker('run', '-d', '--name', 'after', '--net', 'restart-net', 'local/busybox', 'sleep', '600');
  const [before, after] = [await ipOf('before', 'restart-net'), await ipOf('after', 'restart-net')];
  t.regex((await setup.agent.docker('exec', 'after', 'ping', '-c', '1', '-W', '3', before)).stdout, /1 packets received/);
  t.regex((await setup.agent.docker('exec', 'before', 'ping', '-c', '1', '-W', '3', after)).stdout, /1 packets received/);
  // The container from before the restart is torn down by the new daemon.
  await setup.agent.docker('rm', '-f', 'before', 'after');
  await setup.agent.docker('network', 'rm', 'restart-net');
  await assertNothingLeft(t, setup.ds, []);
});

/** A call straight to one of the driver sockets, as Docker makes them. */
function callAgentDriver(socket: string, path: string, body: string) {
  return callDriver(join(setup.agent.pluginsDir, socket), path, body);
}

test.serial('docker - every unsupported option and bad request gets an error saying what to do, and leaves nothing', async (t) => {
  const create = (...args: string[]) => setup.agent.dockerFails('network', 'create', '-d', setup.driver, '--ipam-driver', setup.ipamDriver, ...args);
  t.regex(await create('--opt', 'foo=bar', 'n-opt'), /does not support --opt foo/);
  t.regex(await create('--internal', 'n-int'), /does not support --internal/);
  t.regex(await create('--subnet', '10.220.0.0/16', '--ip-range', '10.220.1.0/24', 'n-range'), /does not support --ip-range/);
  t.regex(await create('--ipam-opt', 'x=y', 'n-ipamopt'), /does not support --ipam-opt \(x\)/);
  t.regex(await create('--subnet', '10.220.0.0/16', '--gateway', '10.220.0.1', 'n-gw'), /no gateway address.*leave out --gateway/);
  t.regex(await create('--subnet', '10.250.0.0/16', 'n-nopool'), /--subnet 10\.250\.0\.0\/16 is not a Calico IP pool/);
  t.regex(await setup.agent.dockerFails('network', 'create', '-d', setup.driver, 'n-defipam'), /another IPAM driver: create it with --ipam-driver calico-ipam/);
  const networks = (await setup.agent.docker('network', 'ls', '--format', '{{.Name}}')).stdout;
  t.false(/n-/.test(networks), 'no refused network exists');

  await setup.agent.docker('network', 'create', '-d', setup.driver, '--ipam-driver', setup.ipamDriver, '--subnet', '10.220.0.0/16', 'n-ok');
  await setup.agent.docker('run', '-d', '--name', 'first', '--net', 'n-ok', '--ip', '10.220.50.5', 'local/busybox', 'sleep', '600');
  t.regex(await setup.agent.dockerFails('run', '-d', '--name', 'second', '--net', 'n-ok', '--ip', '10.220.50.5', 'local/busybox', 'sleep', '600'), /10\.220\.50\.5 is already in use/);
  await setup.agent.docker('rm', '-f', 'second').catch(() => undefined);

  const outside = await callAgentDriver(`${setup.ipamDriver}.sock`, '/IpamDriver.RequestAddress', JSON.stringify({ PoolID: 'CalicoPoolIPv4', Address: '10.250.0.5' }));
  t.is(outside.status, 500);
  t.regex(String(outside.json.Err), /10\.250\.0\.5 is not in any enabled IP pool/);
  const malformed = await callAgentDriver(`${setup.driver}.sock`, '/NetworkDriver.CreateEndpoint', '{"NetworkID": ');
  t.is(malformed.status, 400);
  t.regex(String(malformed.json.Err), /malformed request body/);
  const unknownEndpoint = await callAgentDriver(`${setup.driver}.sock`, '/NetworkDriver.Join', JSON.stringify({ NetworkID: 'x', EndpointID: 'feedface0000', SandboxKey: '/nonexistent' }));
  t.is(unknownEndpoint.status, 500);
  t.regex(String(unknownEndpoint.json.Err), /endpoint feedface0000 is unknown to Calico/);
  const goneEndpoint = await callAgentDriver(`${setup.driver}.sock`, '/NetworkDriver.DeleteEndpoint', JSON.stringify({ NetworkID: 'x', EndpointID: 'feedface0000' }));
  t.is(goneEndpoint.status, 200, 'deleting what is already gone succeeds');
  t.is((await callAgentDriver(`${setup.driver}.sock`, '/NetworkDriver.Leave', JSON.stringify({ NetworkID: 'x', EndpointID: 'feedface0000' }))).status, 200);
  const badId = await callAgentDriver(`${setup.driver}.sock`, '/NetworkDriver.DeleteEndpoint', JSON.stringify({ EndpointID: 42 }));
  t.regex(String(badId.json.Err), /EndpointID must be a string/);
  // Fields of the wrong type are refused by name, never read as something else.
  const v6AsText = await callAgentDriver(`${setup.ipamDriver}.sock`, '/IpamDriver.RequestPool', JSON.stringify({ AddressSpace: 'CalicoGlobalAddressSpace', V6: 'true' }));
  t.is(v6AsText.status, 500);
  t.regex(String(v6AsText.json.Err), /V6 must be true or false, got "true"/);
  const poolIdList = await callAgentDriver(`${setup.ipamDriver}.sock`, '/IpamDriver.ReleasePool', JSON.stringify({ PoolID: [] }));
  t.regex(String(poolIdList.json.Err), /PoolID must be a string, got \[\]/);
  const deep = await callAgentDriver(`${setup.ipamDriver}.sock`, '/IpamDriver.RequestPool', `{"V6":${'['.repeat(30_000)}${']'.repeat(30_000)}}`);
  t.is(deep.status, 400);
  t.regex(String(deep.json.Err), /JSON nested deeper than 64 levels/);
  const unknownPath = await callAgentDriver(`${setup.driver}.sock`, '/NetworkDriver.Frobnicate', '{}');
  t.is(unknownPath.status, 404);
  t.deepEqual((await callAgentDriver(`${setup.driver}.sock`, '/Plugin.Activate', '')).json, { Implements: ['NetworkDriver'] });
  t.deepEqual((await callAgentDriver(`${setup.ipamDriver}.sock`, '/Plugin.Activate', '')).json, { Implements: ['IpamDriver'] });

  await setup.agent.docker('rm', '-f', 'first');
  await setup.agent.docker('network', 'rm', 'n-ok');
  await assertNothingLeft(t, setup.ds, []);
});

test.serial('docker - SIGTERM finishes and removes the driver sockets', async (t) => {
  await setup.agent.stopDaemon('SIGTERM');
  t.false(existsSync(join(setup.agent.pluginsDir, `${setup.driver}.sock`)));
  t.false(existsSync(join(setup.agent.pluginsDir, `${setup.ipamDriver}.sock`)));
  t.false(existsSync(setup.agent.cniSocket));
  await setup.startDaemon();
});

test.serial('docker - the daemon killed while Docker starts containers: the ones that started work after its restart; ipam check and GC leave no leak', async (t) => {
  await setup.agent.docker('network', 'create', '-d', setup.driver, '--ipam-driver', setup.ipamDriver, 'crash-net');
  const names = Array.from({ length: 6 }, (_, i) => `crash${i}`);
  const runs = names.map((name) => setup.agent.docker('run', '-d', '--name', name, '--net', 'crash-net', 'local/busybox', 'sleep', '600').then(() => true, () => false));
  await sleep(150);
  await setup.agent.stopDaemon('SIGKILL');
  await sleep(500);
  await setup.startDaemon(['--gc-interval', '0.5', '--gc-grace', '1']);
  const started = await Promise.all(runs);
  const running = (await setup.agent.docker('ps', '--filter', 'status=running', '--format', '{{.Names}}')).stdout.split('\n').filter((n) => n.startsWith('crash'));
  t.log(`${started.filter(Boolean).length} of ${names.length} docker runs succeeded; running: ${running.join(' ')}`);
  if (running.length >= 2) {
    const ip = await ipOf(running[1]!, 'crash-net');
    t.regex((await setup.agent.docker('exec', running[0]!, 'ping', '-c', '1', '-W', '3', ip)).stdout, /1 packets received/, 'containers that started work');
  }
  // Whatever Docker could not undo while the daemon was away: GC removes dead endpoints, and
  // ipam check finds addresses with no endpoint, which release --from-report frees.
  for (let i = 0; i < 100 && (await setup.ds.resources.list('WorkloadEndpoint', 'libnetwork')).length > running.length; i++) await sleep(100);
  const env = { PATH: process.env.PATH, ETCD_ENDPOINTS: setup.world.fabric.etcd.endpoint, ETCD_PREFIX: setup.prefix };
  const report = join(setup.agent.dir, 'report.json');
  const calicoctl = (...args: string[]) => promisify(execFile)(resolve('dist/bin/calicoctl'), args, { env }).then((r) => r.stdout, (e: { stdout: string }) => e.stdout);
  await calicoctl('ipam', 'check', '--grace-period', '0', '-o', report);
  await calicoctl('ipam', 'release', '--from-report', report);
  const clean = await promisify(execFile)(resolve('dist/bin/calicoctl'), ['ipam', 'check', '--grace-period', '0'], { env }).then(() => true, (e: { stdout: string }) => (t.log(e.stdout), false));
  t.true(clean, 'ipam check finds nothing');
  const endpoints = await setup.ds.resources.list('WorkloadEndpoint', 'libnetwork');
  t.is(endpoints.length, running.length, 'an endpoint for each running container, none for the others');

  await setup.agent.docker('rm', '-f', ...names).catch(() => undefined);
  await setup.agent.docker('network', 'rm', 'crash-net');
  await assertNothingLeft(t, setup.ds, []);
});

test.serial('docker - a container removed while etcd answers nothing (DeleteEndpoint fails; Docker goes on and unmounts the sandbox, whose file it removes only a minute later): GC collects the endpoint once etcd is back', async (t) => {
  await setup.agent.stopDaemon();
  await setup.startDaemon(['--gc-interval', '0.5', '--gc-grace', '1']);
  await setup.agent.docker('network', 'create', '-d', setup.driver, '--ipam-driver', setup.ipamDriver, 'frozen-net');
  await setup.agent.docker('run', '-d', '--name', 'frozen', '--net', 'frozen-net', 'local/busybox', 'sleep', '600');
  const [endpoint] = await setup.ds.resources.list('WorkloadEndpoint', 'libnetwork');
  const sandbox = endpoint!.metadata.annotations![NETNS_ANNOTATION]!;
  setup.world.fabric.etcd.freeze();
  await setup.agent.docker('rm', '-f', 'frozen');
  setup.world.fabric.etcd.thaw();
  t.true(existsSync(sandbox), 'the sandbox\'s file is still there (no namespace in it)');
  for (let i = 0; i < 100 && (await setup.ds.resources.list('WorkloadEndpoint', 'libnetwork')).length > 0; i++) await sleep(100);
  t.deepEqual((await setup.ds.resources.list('WorkloadEndpoint', 'libnetwork')).map((e) => e.metadata.name), [], 'the record of the removed container is collected');
  await setup.agent.docker('network', 'rm', 'frozen-net');
  await assertNothingLeft(t, setup.ds, []);
});
