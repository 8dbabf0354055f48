import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { DockerAgent } from '../../sim/docker-agent';
import { MesosAgent } from '../../sim/mesos-agent';
import { waitFor } from '../../sim/wait';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';

let world: CniWorld;
const agents: DockerAgent[] = [];
const mesos: MesosAgent[] = [];
const listeners: ChildProcess[] = [];

test.before(async () => {
  world = await CniWorld.create();
});
test.after.always(async () => {
  for (const child of listeners) child.kill('SIGKILL');
  for (const m of mesos) await m.cleanup();
  for (const agent of agents) await agent.destroy();
  await world?.destroy();
});

/** A workload of either containerizer: how to ping from it, connect from it, and listen in it. */
interface Workload {
  readonly name: string;
  readonly ip: string;
  ping(ip: string): Promise<boolean>;
  connect(ip: string, port: number): Promise<boolean>;
  listen(port: number): Promise<void>;
}

function dockerWorkload(agent: DockerAgent, name: string, ip: string): Workload {
  const ok = (pending: Promise<unknown>) => pending.then(() => true, () => false);
  return {
    name,
    ip,
    ping: (to) => ok(agent.docker('exec', name, 'ping', '-c', '1', '-W', '1', to)),
    connect: (to, port) => ok(agent.docker('exec', name, 'sh', '-c', `echo hi | nc -w 1 ${to} ${port}`)),
    listen: async (port) => void (await agent.docker('exec', '-d', name, 'nc', '-ll', '-p', String(port), '-e', '/bin/true')),
  };
}

function cniWorkload(agent: MesosAgent, id: string, ip: string): Workload {
  const netns = agent.container(id);
  return {
    name: id,
    ip,
    ping: (to) => netns.ping(to),
    connect: (to, port) => netns.exec('busybox', ['nc', '-w', '1', to, String(port)], { input: 'hi\n', timeout: 5000 }).then(() => true, () => false),
    listen: async (port) => {
      listeners.push(spawn('nsenter', [`--net=${netns.path}`, 'busybox', 'nc', '-ll', '-p', String(port), '-e', '/bin/true'], { stdio: 'ignore' }));
    },
  };
}

test.serial('policy cluster - CNI tasks and Docker containers on two hosts: one network (a Docker and a CNI network of one name) reaches itself by ping and TCP, another is isolated from it both ways', async (t) => {
  const { prefix, ds } = await world.scenario('policy-cluster', { v4: '10.231.0.0/16', v6: 'fd00:231::/64' });
  const driver = `calico-${Math.random().toString(36).slice(2, 7)}`;
  for (const n of [1, 2]) {
    const agent = await DockerAgent.start(await world.fabric.addHost('pol'));
    agents.push(agent);
    await agent.startDaemon({ etcdEndpoint: world.fabric.etcd.hostEndpoint, prefix, node: `pol-${n}`, driver, ipamDriver: `${driver}-ipam`, extraArgs: ['--scope', 'local', '--metrics-address', ''] });
    mesos.push(new MesosAgent(agent.host, world.pluginsDir));
  }
  const workloads: Record<string, Workload> = {};
  const tasks: string[][] = [[], []];
  for (const [n, agent] of agents.entries()) {
    for (const network of ['web', 'db']) {
      await agent.docker('network', 'create', '-d', driver, '--ipam-driver', `${driver}-ipam`, network);
      const name = `${network}-docker-${n + 1}`;
      await agent.docker('run', '-d', '--name', name, '--net', network, 'local/busybox', 'sleep', '600');
      const ip = await agent.networkSetting(name, network, 'IPAddress');
      workloads[name] = dockerWorkload(agent, name, ip);
      const id = randomUUID();
      // The plugin works alone here: the daemon runs in the Docker agent's mount namespace, where
      // the task's namespace file is not mounted.
      const launched = await mesos[n]!.launch(id, [{ network: world.network(network, prefix, `pol-${n + 1}`, { daemon_socket: '' }) }]);
      t.is(launched.runs[0]!.code, 0, launched.runs[0]!.stdout);
      tasks[n]!.push(id);
      workloads[`${network}-cni-${n + 1}`] = cniWorkload(mesos[n]!, id, launched.ips[0]!.ip4!.split('/')[0]!);
    }
  }
  for (const w of Object.values(workloads)) await w.listen(8080);
  // Routes and policy reach every host a moment after the records: wait for the farthest pair.
  await waitFor('web on host 1 reaching web on host 2', () => workloads['web-cni-1']!.ping(workloads['web-docker-2']!.ip), 15_000);

  const names = Object.keys(workloads);
  const failures: string[] = [];
  for (const from of names) {
    // Every destination of one source at once: a dropped probe waits out its one-second timeout.
    await Promise.all(names.filter((to) => to !== from).map(async (to) => {
      const same = from.split('-')[0] === to.split('-')[0];
      const [pinged, connected] = await Promise.all([workloads[from]!.ping(workloads[to]!.ip), workloads[from]!.connect(workloads[to]!.ip, 8080)]);
      if (pinged !== same) failures.push(`${from} -> ${to} ping ${pinged ? 'answered' : 'dropped'}`);
      if (connected !== same) failures.push(`${from} -> ${to} TCP ${connected ? 'connected' : 'dropped'}`);
    }));
  }
  t.deepEqual(failures, [], 'same network reaches (ping and TCP), another does not, across hosts and containerizers');

  for (const [n, agent] of agents.entries()) {
    for (const id of tasks[n]!) for (const r of await mesos[n]!.destroy(id)) t.is(r.code, 0, r.stdout);
    await agent.docker('rm', '-f', `web-docker-${n + 1}`, `db-docker-${n + 1}`);
    await agent.docker('network', 'rm', 'web', 'db');
  }
  await assertNothingLeft(t, ds, []);
});
