/**
 * The main job, on one machine: a simulated datacenter of two racks (a fabric namespace with etcd
 * and two agent namespaces on its link; a third agent in another subnet behind a router that
 * knows nothing of workload addresses), each agent with dockerd and our node daemon; on each agent
 * a Mesos-style CNI task and a Docker container on the network "calico", and a CNI task on the
 * network "private". The pool encapsulates with VXLAN across subnets only (CrossSubnet): within
 * the rack packets go directly, to the other rack through the VXLAN tunnel. Prints their
 * addresses, a ping matrix (those on "calico" reach each other, across hosts, racks and
 * containerizers; the daemons' policy keeps "private" and "calico" apart, both ways) with the path
 * each pair takes, `calicoctl ipam show --show-blocks` and `node status`, then removes everything.
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
  // Each simulated host, dockerd and daemon removes itself if the demo is killed: one exit hook each.
  process.setMaxListeners(32);
  const world = await CniWorld.create();
  const dockers: DockerAgent[] = [];
  const mesos: MesosAgent[] = [];
  try {
    const etcdEnv = { PATH: process.env.PATH, ETCD_ENDPOINTS: world.fabric.etcd.endpoint };
    const calicoctl = async (...args: string[]) => (await run(resolve('dist/bin/calicoctl'), args, { env: etcdEnv })).stdout.trimEnd();
    const calicoctlApply = (document: string) => new Promise<void>((done, fail) => {
      const child = execFile(resolve('dist/bin/calicoctl'), ['apply', '-f', '-'], { env: etcdEnv }, (err, _stdout, stderr) => (err ? fail(new Error(stderr || err.message)) : done()));
      child.stdin!.end(document);
    });
    /** Each agent's host address, for the path a ping takes. */
    const addresses = new Map<string, string>();
    console.log(await calicoctl('datastore', 'init', '--default-pool', '10.96.0.0/16'));
    // VXLAN to hosts in another subnet only, as Calico's CrossSubnet does.
    const pool = JSON.parse(await calicoctl('get', 'ippool', 'default-ipv4-ippool', '-o', 'json')) as { spec: Record<string, unknown> };
    await calicoctlApply(JSON.stringify({ ...pool, spec: { ...pool.spec, vxlanMode: 'CrossSubnet' } }));
    console.log('pool default-ipv4-ippool: vxlanMode CrossSubnet (VXLAN only to hosts in another subnet)');
    const rack = await world.fabric.addRack();

    const workloads: Workload[] = [];
    for (const n of [1, 2, 3]) {
      const node = `agent-${n}`;
      const inRack = n === 3;
      const host = await world.fabric.addHost(`agent${n}`, inRack ? rack : undefined);
      const address = inRack ? '10.98.0.11' : `10.99.0.${10 + n}`;
      addresses.set(node, address);
      const docker = await DockerAgent.start(host);
      dockers.push(docker);
      await docker.startDaemon({ etcdEndpoint: world.fabric.etcd.hostEndpoint, prefix: PREFIX, node, driver: 'calico', ipamDriver: 'calico-ipam', extraArgs: ['--scope', 'local', '--log-level', 'warning', '--backend', 'vxlan'] });
      console.log(`${node}: dockerd and the node daemon are up (host address ${address}${inRack ? ', rack 2, behind the router' : ', rack 1'})`);

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
    const pathOf = (from: Workload, to: Workload) => {
      if (from.agent === to.agent) return 'same host';
      const [a, b] = [addresses.get(from.agent)!, addresses.get(to.agent)!];
      return a.split('.').slice(0, 3).join('.') === b.split('.').slice(0, 3).join('.') ? 'direct, same rack' : 'VXLAN, through the router';
    };
    console.log('\nPaths between agents (CrossSubnet):');
    const agentNames = [...addresses.keys()];
    printTable(['from \\ to', ...agentNames], agentNames.map((from) => [from, ...agentNames.map((to) => pathOf({ agent: from } as Workload, { agent: to } as Workload))]));
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
    console.log(failures === 0 ? '\nThe workloads on "calico" reach each other, in both racks; those on "private" reach only each other.' : `\n${failures} ping(s) went against the policy.`);
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
