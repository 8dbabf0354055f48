/**
 * Docker containers carry their labels into policy, as CNI tasks do: a container's
 * `org.projectcalico.label.*` labels become its endpoint's, read from Docker after Join (later, when
 * Docker's API is away at Join), kept across a restart; policy selects Docker containers and CNI
 * tasks alike by them, both ways. With a real dockerd.
 */
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Resource } from '../../shared/datastore';
import { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { useDockerAgent } from '../helpers/docker-world';

const NETWORK = 'lab';
const setup = useDockerAgent(test, { host: 'dlab', scenario: 'docker-labels', pools: { v4: '10.225.0.0/16', v6: 'fd00:225::/64' }, node: 'docker-labels-1', shownLog: /ERROR|WARNING/, networks: [NETWORK] });

/** The endpoint record of a running container (by the endpoint Docker gave it on the network). */
async function endpointOf(container: string): Promise<Resource<'WorkloadEndpoint'> | undefined> {
  const endpointId = await setup.agent.networkSetting(container, NETWORK, 'EndpointID');
  return (await setup.ds.resources.list('WorkloadEndpoint', 'libnetwork')).find((e) => e.spec.endpoint === endpointId);
}

async function labelsOf(container: string): Promise<Record<string, string>> {
  return (await endpointOf(container))?.metadata.labels ?? {};
}

const ipOf = (container: string) => setup.agent.networkSetting(container, NETWORK, 'IPAddress');

test.serial('docker labels - a container\'s org.projectcalico.label.* labels become its endpoint\'s: sanitised, long values cut, reserved keys refused; kept across a restart', async (t) => {
  const long = 'v'.repeat(70);
  await setup.agent.docker('run', '-d', '--name', 'lab1', '--net', NETWORK,
    '--label', 'org.projectcalico.label.app=web', '--label', 'org.projectcalico.label.tier/name=front end', '--label', `org.projectcalico.label.long=${long}`,
    '--label', 'org.projectcalico.label.pcn.other=', '--label', 'org.projectcalico.label.projectcalico.org/namespace=default',
    '--label', 'unrelated=yes', 'local/busybox', 'sleep', '600');
  await waitFor('the container\'s labels on its endpoint', async () => (await labelsOf('lab1')).app === 'web', 15_000);
  const labels = await labelsOf('lab1');
  t.is(labels['tier.name'], 'front-end');
  t.is(labels.long, 'v'.repeat(63), 'a value longer than 63 characters is cut, as for Mesos');
  t.false('pcn.other' in labels, 'no label makes a container a member of another network');
  t.is(labels['projectcalico.org/namespace'], 'libnetwork', 'Calico\'s own labels stay ours');
  t.false('unrelated' in labels, 'only labels with the prefix are applied');
  t.regex(setup.agent.daemonLog, /container labels with reserved keys were dropped/);

  await setup.agent.docker('restart', '-t', '0', 'lab1');
  await waitFor('the restarted container\'s endpoint to carry its labels', async () => (await labelsOf('lab1')).app === 'web', 15_000);
  t.pass();
  await setup.agent.docker('rm', '-f', 'lab1');
});

test.serial('docker labels - policy selects Docker containers and CNI tasks by label alike: app=web reaches app=db, nothing else does, both ways', async (t) => {
  const mesos = new MesosAgent(setup.agent.host, setup.world.pluginsDir);
  t.teardown(() => mesos.cleanup());
  const cniTask = async (labels: Record<string, string>) => {
    const id = randomUUID();
    const launched = await mesos.launch(id, [{ network: setup.world.network(NETWORK, setup.prefix, setup.node, { daemon_socket: '' }), labels }]);
    t.is(launched.runs[0]!.code, 0, launched.runs[0]!.stdout);
    return { id, ip: launched.ips[0]!.ip4!.split('/')[0]! };
  };
  await setup.agent.docker('run', '-d', '--name', 'dock-db', '--net', NETWORK, '--label', 'org.projectcalico.label.app=db', 'local/busybox', 'sleep', '600');
  await setup.agent.docker('run', '-d', '--name', 'dock-web', '--net', NETWORK, '--label', 'org.projectcalico.label.app=web', 'local/busybox', 'sleep', '600');
  await setup.agent.docker('run', '-d', '--name', 'dock-other', '--net', NETWORK, 'local/busybox', 'sleep', '600');
  const [cniWeb, cniDb, cniOther] = [await cniTask({ app: 'web' }), await cniTask({ app: 'db' }), await cniTask({})];
  for (const [name, app] of [['dock-db', 'db'], ['dock-web', 'web']] as const) await waitFor(`${name}'s labels`, async () => (await labelsOf(name)).app === app, 15_000);

  await setup.ds.resources.create({ kind: 'GlobalNetworkPolicy', apiVersion: 'projectcalico.org/v3', metadata: { name: 'db-from-web' }, spec: { selector: "app == 'db'", ingress: [{ action: 'Allow', source: { selector: "app == 'web'" } }] } });
  t.teardown(() => setup.ds.resources.delete('GlobalNetworkPolicy', 'db-from-web').catch(() => undefined));
  const dockerPing = (from: string, ip: string) => setup.agent.docker('exec', from, 'ping', '-c', '1', '-W', '2', ip).then(() => true, () => false);
  const dockDb = await ipOf('dock-db');
  await waitFor('the CNI web task to reach the Docker db', () => mesos.container(cniWeb.id).ping(dockDb), 10_000);
  t.false(await mesos.container(cniOther.id).ping(dockDb), 'a CNI task without app=web does not reach the Docker db');
  t.true(await dockerPing('dock-web', cniDb.ip), 'the Docker web container reaches the CNI db task');
  t.false(await dockerPing('dock-other', cniDb.ip), 'a Docker container without app=web does not');
  t.true(await dockerPing('dock-web', dockDb), 'Docker to Docker by label too');
  t.true(await mesos.container(cniOther.id).ping(await ipOf('dock-other')), 'the network\'s own profile still joins the rest');

  for (const task of [cniWeb, cniDb, cniOther]) for (const r of await mesos.destroy(task.id)) t.is(r.code, 0, r.stdout);
  await setup.agent.docker('rm', '-f', 'dock-db', 'dock-web', 'dock-other');
});

test.serial('docker labels - with Docker\'s API away at Join the container still works, and its labels are applied once Docker answers', async (t) => {
  // The daemon reaches Docker's API through a proxy we stop and start; Docker itself keeps running.
  // The proxy forks a process per connection: it is stopped as a process group.
  const proxySocket = join(setup.agent.dir, 'proxy.sock');
  const startProxy = () => spawn('socat', [`UNIX-LISTEN:${proxySocket},fork`, `UNIX-CONNECT:${setup.agent.socket}`], { stdio: 'ignore', detached: true });
  const stopProxy = (proxy: ReturnType<typeof startProxy>) => {
    try {
      process.kill(-proxy.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  };
  let proxy = startProxy();
  t.teardown(() => stopProxy(proxy));
  await waitFor('the proxy', () => existsSync(proxySocket), 5000);
  await setup.agent.stopDaemon();
  await setup.startDaemon(['--docker-host', `unix://${proxySocket}`]);
  t.teardown(async () => {
    await setup.agent.stopDaemon();
    await setup.startDaemon();
  });
  await setup.agent.docker('network', 'create', '-d', setup.driver, '--ipam-driver', setup.ipamDriver, 'late');
  await setup.agent.docker('run', '-d', '--name', 'late-peer', '--net', 'late', 'local/busybox', 'sleep', '600');
  stopProxy(proxy);
  rmSync(proxySocket, { force: true });

  await setup.agent.docker('run', '-d', '--name', 'late1', '--net', 'late', '--label', 'org.projectcalico.label.app=late', 'local/busybox', 'sleep', '600');
  const peer = await setup.agent.networkSetting('late-peer', 'late', 'IPAddress');
  await waitFor('the container to reach its network', () => setup.agent.docker('exec', 'late1', 'ping', '-c', '1', '-W', '2', peer).then(() => true, () => false), 10_000);
  const endpointId = await setup.agent.networkSetting('late1', 'late', 'EndpointID');
  const record = async () => (await setup.ds.resources.list('WorkloadEndpoint', 'libnetwork')).find((e) => e.spec.endpoint === endpointId);
  t.false('app' in ((await record())?.metadata.labels ?? {}), 'no labels while Docker does not answer');
  await waitFor('the daemon to say it cannot read them yet', () => setup.agent.daemonLog.includes('cannot read the container\'s labels from Docker yet'), 10_000);

  proxy = startProxy();
  await waitFor('the labels once Docker answers', async () => (await record())?.metadata.labels?.app === 'late', 20_000);
  t.pass();
  await setup.agent.docker('rm', '-f', 'late1', 'late-peer');
  await setup.agent.docker('network', 'rm', 'late');
});
