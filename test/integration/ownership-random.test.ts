import test from 'ava';
import { join } from 'node:path';
import { handleOf, hostVethName, isDockerHandle } from '../../shared/endpoints/identity';
import { parseAddress } from '../../shared/net/address';
import { HOST_PATH, runPlugin } from '../../sim/cni-exec';
import { NodeDaemon } from '../../sim/daemon';
import { callDriver } from '../../sim/driver-client';
import type { MesosAgent } from '../../sim/mesos-agent';
import { CniWorld, assertNothingLeft } from '../helpers/cni-world';

/**
 * Random CNI ADDs, DELs and GCs, Docker address requests and releases (some of them of addresses
 * that are not Docker's), over names that share prefixes and dots, on two hosts (one through its
 * node daemon, one with the plugins alone). After every step: every live workload still holds its
 * address under its own handle and still has its host veth, and no address has two owners.
 */
const NETWORKS = ['a', 'a.b', 'calico', 'calico.prod', 'libnetwork'];
const CONTAINERS = ['b.c', 'c', 'x1', 'x1.y', 'deadbeefcafe0001', 'deadbeefcafe0002'];
const IFNAMES = ['eth0', 'eth1'];
const BUDGET_MS = 55_000;
const MAX_STEPS = 160;

interface Host {
  readonly agent: MesosAgent;
  readonly node: string;
  readonly daemon: NodeDaemon;
  readonly viaDaemon: boolean;
  readonly containers: Set<string>;
}

let world: CniWorld;
const daemons: NodeDaemon[] = [];
test.before(async () => {
  world = await CniWorld.create();
});
test.after.always(async () => {
  for (const daemon of daemons) await daemon.destroy();
  await world?.destroy();
});

/** A small seeded generator, so a failing run can be replayed from its logged seed. */
function random(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  return { next, pick: <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]! };
}

test('ownership - a randomised run of ADD, DEL, GC and Docker calls over shared names never takes a live workload\'s address or link', async (t) => {
  const seed = Number(process.env.OWNERSHIP_SEED ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (OWNERSHIP_SEED=${seed} replays it)`);
  const rnd = random(seed);
  const { prefix, ds, ipam } = await world.scenario('random');
  const hosts: Host[] = [];
  for (const [i, viaDaemon] of [true, false].entries()) {
    const agent = await world.addAgent();
    const node = `rand-${i}`;
    const daemon = await NodeDaemon.start(agent.host, ['--etcd-endpoints', world.fabric.hostEndpoints, '--etcd-prefix', prefix, '--nodename', node, '--no-routes', '--gc-interval', '0', '--metrics-address', '']);
    daemons.push(daemon);
    hosts.push({ agent, node, daemon, viaDaemon, containers: new Set() });
  }
  const confOf = (host: Host, network: string) => ({ ...world.network(network, prefix, host.node, { daemon_socket: host.viaDaemon ? host.daemon.cniSocket : '' }), cniVersion: '1.1.0' });
  /** Live CNI attachments: "host|network|container|ifname" -> address. */
  const cni = new Map<string, string>();
  /** Docker addresses -> the host whose driver handed it out. */
  const docker = new Map<string, Host>();
  const key = (host: Host, network: string, id: string, ifname: string) => [host.node, network, id, ifname].join('|');
  const cniCall = (host: Host, command: string, network: string, id: string, ifname: string) =>
    runPlugin(host.agent.host, join(world.pluginsDir, 'calico'), host.agent.env(command, id, ifname), JSON.stringify(confOf(host, network)), 120_000);

  const started = Date.now();
  let steps = 0;
  for (; steps < MAX_STEPS && Date.now() - started < BUDGET_MS; steps++) {
    const host = rnd.pick(hosts);
    const [network, id, ifname] = [rnd.pick(NETWORKS), rnd.pick(CONTAINERS), rnd.pick(IFNAMES)];
    const roll = rnd.next();
    let step: string;
    if (roll < 0.35) {
      step = `ADD ${host.node} ${network} ${id} ${ifname}`;
      if (!host.containers.has(id)) {
        await host.agent.createContainer(id);
        host.containers.add(id);
      }
      const run = await cniCall(host, 'ADD', network, id, ifname);
      const taken = [...cni.keys()].find((k) => k.startsWith(`${host.node}|`) && k.endsWith(`|${id}|${ifname}`));
      if (taken && taken !== key(host, network, id, ifname)) {
        t.not(run.code, 0, `${step}: the interface is another network's`);
      } else {
        t.is(run.code, 0, `${step}: ${run.stdout}`);
        const address = String(run.json?.ips?.[0]?.address ?? '').split('/')[0]!;
        if (taken) t.is(address, cni.get(taken)!, `${step}: a repeat ADD answers the same`);
        cni.set(key(host, network, id, ifname), address);
      }
    } else if (roll < 0.6) {
      step = `DEL ${host.node} ${network} ${id} ${ifname}`;
      const run = await cniCall(host, 'DEL', network, id, ifname);
      t.is(run.code, 0, `${step}: ${run.stdout}`);
      cni.delete(key(host, network, id, ifname));
    } else if (roll < 0.7) {
      const live = [...cni.keys()].filter((k) => k.startsWith(`${host.node}|${network}|`)).map((k) => k.split('|') as [string, string, string, string]);
      const valid = live.filter(() => rnd.next() < 0.6);
      step = `GC ${host.node} ${network} keeping ${valid.length} of ${live.length}`;
      const run = await runPlugin(host.agent.host, join(world.pluginsDir, 'calico'), { CNI_COMMAND: 'GC', CNI_PATH: world.pluginsDir, PATH: HOST_PATH },
        JSON.stringify({ ...confOf(host, network), 'cni.dev/valid-attachments': valid.map(([, , containerID, name]) => ({ containerID, ifname: name })) }));
      t.is(run.code, 0, `${step}: ${run.stdout}`);
      for (const [node, net, cid, name] of live) if (!valid.some((v) => v[2] === cid && v[3] === name)) cni.delete([node, net, cid, name].join('|'));
    } else if (roll < 0.85) {
      step = `RequestAddress ${host.node}`;
      const answer = await callDriver(host.daemon.ipamSocket, '/IpamDriver.RequestAddress', { PoolID: 'CalicoPoolIPv4' });
      t.is(answer.status, 200, `${step}: ${JSON.stringify(answer.json)}`);
      docker.set(String(answer.json.Address).split('/')[0]!, host);
    } else {
      // Release an address: Docker's own, another host's Docker address, or a CNI task's.
      const choices = [...docker.keys(), ...cni.values()];
      if (choices.length === 0) continue;
      const address = rnd.pick(choices);
      step = `ReleaseAddress ${host.node} ${address}`;
      const answer = await callDriver(host.daemon.ipamSocket, '/IpamDriver.ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: address });
      t.is(answer.status, 200, step);
      if (docker.get(address) === host) docker.delete(address);
    }

    // Nothing live lost its address or its link, and no address has two owners.
    const all = [...cni.values(), ...docker.keys()];
    t.is(new Set(all).size, all.length, `${step}: no address has two owners`);
    for (const [k, address] of cni) {
      const [node, net, cid, name] = k.split('|') as [string, string, string, string];
      const owner = await ipam.ownerOf(parseAddress(address));
      t.is(owner?.handle, handleOf({ orchestrator: 'cni', node, network: net, containerId: cid, ifname: name }), `${step}: ${k} keeps ${address}`);
      const links = await hosts.find((h) => h.node === node)!.agent.host.json<{ ifname: string }[]>('link', 'show');
      t.true(links.some((l) => l.ifname === hostVethName({ orchestrator: 'cni', node, network: net, containerId: cid, ifname: name })), `${step}: ${k} keeps its veth`);
    }
    for (const address of docker.keys()) t.true(isDockerHandle((await ipam.ownerOf(parseAddress(address)))?.handle ?? ''), `${step}: Docker keeps ${address}`);
  }
  t.log(`${steps} steps in ${Math.round((Date.now() - started) / 1000)} s; ${cni.size} CNI attachments and ${docker.size} Docker addresses live at the end`);

  for (const k of cni.keys()) {
    const [node, net, cid, name] = k.split('|') as [string, string, string, string];
    t.is((await cniCall(hosts.find((h) => h.node === node)!, 'DEL', net, cid, name)).code, 0);
  }
  for (const [address, host] of docker) await callDriver(host.daemon.ipamSocket, '/IpamDriver.ReleaseAddress', { PoolID: 'CalicoPoolIPv4', Address: address });
  for (const host of hosts) for (const id of host.containers) await host.agent.destroy(id);
  await assertNothingLeft(t, ds, hosts.map((h) => h.agent));
});
