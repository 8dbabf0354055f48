/**
 * The main job, on one machine: a simulated datacenter (a fabric namespace with etcd, two agent
 * namespaces joined to it), each agent with dockerd and our node daemon; on each agent a Mesos-style
 * CNI task and a Docker container on the network "calico", and a CNI task on the network "private".
 * Prints their addresses, a ping matrix (the four on "calico" reach each other, across hosts and
 * containerizers; the daemons' policy keeps "private" and "calico" apart, both ways),
 * `calicoctl ipam show --show-blocks`, then removes everything it made.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { table } from '../ctl/output';
import { DockerAgent } from '../sim/docker-agent';
import { MesosAgent } from '../sim/mesos-agent';
import { CniWorld } from '../sim/world';

const run = promisify(execFile);
const PREFIX = '/calico';
const NETWORK = 'calico';
/** A second network: isolated from the first by the profiles the daemons enforce. */
const PRIVATE = 'private';

interface Workload {
  readonly agent: string;
  readonly network: string;
  readonly kind: 'CNI task' | 'Docker container';
  readonly name: string;
  readonly ip: string;
  readonly ping: (ip: string) => Promise<boolean>;
}

function printTable(header: string[], rows: string[][]): void {
  console.log(table(header, rows).replace(/^/gm, '  '));
}

async function main(): Promise<number> {
  const world = await CniWorld.create();
  const dockers: DockerAgent[] = [];
  const mesos: MesosAgent[] = [];
  try {
    const etcdEnv = { PATH: process.env.PATH, ETCD_ENDPOINTS: world.fabric.etcd.endpoint };
    const calicoctl = async (...args: string[]) => (await run(resolve('dist/bin/calicoctl'), args, { env: etcdEnv })).stdout.trimEnd();
    console.log(await calicoctl('datastore', 'init', '--default-pool', '10.96.0.0/16'));

    const workloads: Workload[] = [];
    for (const n of [1, 2]) {
      const node = `agent-${n}`;
      const host = await world.fabric.addHost(`agent${n}`);
      const docker = await DockerAgent.start(host);
      dockers.push(docker);
      await docker.startDaemon({ etcdEndpoint: world.fabric.etcd.hostEndpoint, prefix: PREFIX, node, driver: 'calico', ipamDriver: 'calico-ipam', extraArgs: ['--scope', 'local', '--log-level', 'warning'] });
      console.log(`${node}: dockerd and the node daemon are up (host address 10.99.0.${10 + n})`);

      await docker.docker('network', 'create', '-d', 'calico', '--ipam-driver', 'calico-ipam', NETWORK);
      const container = `web-${n}`;
      await docker.docker('run', '-d', '--name', container, '--net', NETWORK, 'local/busybox', 'sleep', '600');
      const containerIp = (await docker.docker('inspect', '-f', `{{(index .NetworkSettings.Networks "${NETWORK}").IPAddress}}`, container)).stdout.trim();
      workloads.push({ agent: node, network: NETWORK, kind: 'Docker container', name: container, ip: containerIp, ping: async (ip) => docker.docker('exec', container, 'ping', '-c', '1', '-W', '2', ip).then(() => true, () => false) });

      const agent = new MesosAgent(host, world.pluginsDir);
      mesos.push(agent);
      for (const network of [NETWORK, PRIVATE]) {
        const taskId = randomUUID();
        const launch = await agent.launch(taskId, [{ network: world.network(network, PREFIX, node, { log_file_path: '', daemon_socket: '' }), labels: { app: 'demo' } }]);
        if (launch.runs[0]!.code !== 0) throw new Error(`the CNI ADD failed: ${launch.runs[0]!.stdout}`);
        workloads.push({ agent: node, network, kind: 'CNI task', name: taskId.slice(0, 8), ip: launch.ips[0]!.ip4!.split('/')[0]!, ping: (ip) => agent.container(taskId).ping(ip) });
      }
    }

    console.log('\nWorkloads:');
    printTable(['AGENT', 'NETWORK', 'KIND', 'NAME', 'IP'], workloads.map((w) => [w.agent, w.network, w.kind, w.name, w.ip]));

    // The daemons route each other's blocks and program policy within moments: a ping that should
    // pass gets a few tries; one that should not gets one (it must never pass).
    const pingAsExpected = async (from: Workload, to: Workload) => {
      const expected = from.network === to.network;
      for (let i = 0; i < (expected ? 5 : 1); i++) if (await from.ping(to.ip)) return expected;
      return !expected;
    };
    await sleep(500);
    console.log('\nPing matrix (row pings column; "blocked": another network, kept apart by policy):');
    let failures = 0;
    const rows: string[][] = [];
    for (const from of workloads) {
      const cells = await Promise.all(workloads.map(async (to) => {
        const same = from.network === to.network;
        if (await pingAsExpected(from, to)) return same ? 'ok' : 'blocked';
        failures++;
        return same ? 'FAIL' : 'FAIL (answered)';
      }));
      rows.push([`${from.name} (${from.agent}, ${from.network})`, ...cells]);
    }
    printTable(['from \\ to', ...workloads.map((w) => w.ip)], rows);

    console.log('\n$ calicoctl ipam show --show-blocks');
    console.log(await calicoctl('ipam', 'show', '--show-blocks'));
    console.log('\n$ calicoctl node status');
    console.log(await calicoctl('node', 'status'));
    console.log(failures === 0 ? '\nThe four workloads on "calico" reach each other; those on "private" reach only each other.' : `\n${failures} ping(s) went against the policy.`);
    return failures === 0 ? 0 : 1;
  } finally {
    for (const agent of mesos) await agent.cleanup();
    for (const docker of dockers) await docker.destroy();
    await world.destroy();
    console.log('Cleaned up: containers, tasks, namespaces, dockerds, daemons and etcd are gone.');
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
