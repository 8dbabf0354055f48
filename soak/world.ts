/**
 * The soak's datacenter: a 3-member etcd, two racks of two agents each (the second behind its
 * router), a node daemon on every agent and dockerd on one agent per rack. Routing is either BIRD
 * through a route reflector (the second rack's router: every agent its client, next hop itself,
 * so a route to another rack's block leads through it) or VXLAN between the agents.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BirdRouter } from '../sim/bird-router';
import { NodeDaemon, runningBird } from '../sim/daemon';
import { DockerAgent } from '../sim/docker-agent';
import type { Rack } from '../sim/fabric';
import { MesosAgent } from '../sim/mesos-agent';
import { NetmodulesAgent } from '../sim/netmodules-agent';
import type { Netns } from '../sim/netns';
import { CniWorld } from '../sim/world';
import type { Datastore } from '../shared/datastore';
import type { JsonObject } from '../shared/datastore/codec';
import type { Ipam } from '../shared/ipam/ipam';

export type Routing = 'bird' | 'vxlan';
export const NETWORKS = ['netA', 'netB'] as const;
export type NetworkName = (typeof NETWORKS)[number];
const AS_NUMBER = 64512;
/** The pools the soak starts with; more are added (and disabled) as it runs. */
export const FIRST_POOL = { name: 'soak-0', cidr: '10.210.0.0/20' };

/** How an agent's daemon is started, the same way every time (its sockets stay where they were). */
interface DaemonSettings {
  readonly etcdEndpoints: string;
  readonly prefix: string;
  readonly extraArgs: readonly string[];
  readonly dir: string;
  /** Where its log is appended, across restarts. */
  readonly logFile: string;
}

/** One agent: its host, the three ways tasks reach it, and its node daemon. */
export class SoakAgent {
  private nodeDaemon: NodeDaemon | undefined;
  readonly netmodules: NetmodulesAgent;

  constructor(
    readonly index: number,
    readonly name: string,
    readonly rack: 1 | 2,
    readonly host: Netns,
    readonly mesos: MesosAgent,
    readonly docker: DockerAgent | undefined,
    private readonly daemon: DaemonSettings,
  ) {
    // calico_mesos through the daemon, as the README recommends.
    this.netmodules = new NetmodulesAgent(host, { ETCD_ENDPOINTS: daemon.etcdEndpoints, ETCD_PREFIX: daemon.prefix, NODENAME: name, CALICO_CNI_SOCKET: this.cniSocket }, name);
  }

  get cniSocket(): string {
    return this.docker ? this.docker.cniSocket : join(this.daemon.dir, 'cni.sock');
  }

  /** The pid of the BIRD the daemon started, while it runs (Docker agents' daemons too). */
  birdPid(): number | undefined {
    return runningBird(join(this.docker ? this.docker.dir : this.daemon.dir, 'bird'));
  }

  async startDaemon(): Promise<void> {
    const { etcdEndpoints, prefix, extraArgs, dir, logFile } = this.daemon;
    if (this.docker) await this.docker.startDaemon({ ...DOCKER_DRIVERS, etcdEndpoint: etcdEndpoints, prefix, node: this.name, extraArgs: [...extraArgs, '--scope', 'local'], logFile });
    else this.nodeDaemon = await NodeDaemon.start(this.host, ['--etcd-endpoints', etcdEndpoints, '--etcd-prefix', prefix, '--nodename', this.name, ...extraArgs], dir, logFile);
  }

  async stopDaemon(signal: NodeJS.Signals): Promise<void> {
    if (this.docker) await this.docker.stopDaemon(signal);
    else await this.nodeDaemon?.stop(signal);
  }

  async destroy(): Promise<void> {
    await this.netmodules.cleanupAll().catch(() => undefined);
    await this.mesos.cleanup();
    if (this.docker) await this.docker.destroy();
    else await this.nodeDaemon?.destroy();
    rmSync(this.daemon.dir, { recursive: true, force: true });
  }
}

export const DOCKER_DRIVERS = { driver: 'calico-soak', ipamDriver: 'calico-soak-ipam' } as const;

export class SoakWorld {
  private constructor(
    readonly world: CniWorld,
    readonly prefix: string,
    readonly ds: Datastore,
    readonly ipam: Ipam,
    readonly routing: Routing,
    readonly agents: readonly SoakAgent[],
    readonly reflector: BirdRouter | undefined,
    /** The daemons' logs, one file per agent; kept after destroy() for whoever reads a failure. */
    readonly logsDir: string,
  ) {}

  static async create(routing: Routing, log: (line: string) => void): Promise<SoakWorld> {
    const logsDir = mkdtempSync(join(tmpdir(), 'soak-logs-'));
    const world = await CniWorld.create({ etcdMembers: 3 });
    const agents: SoakAgent[] = [];
    let reflector: BirdRouter | undefined;
    try {
      const rack = await world.fabric.addRack();
      const prefix = `/soak-${randomUUID().slice(0, 8)}`;
      const { ds, ipam } = await world.datastore(prefix);
      await ipam.createPool(FIRST_POOL.name, { cidr: FIRST_POOL.cidr, blockSize: 26, vxlanMode: routing === 'vxlan' ? 'Always' : 'Never' });
      if (routing === 'bird') await reflectThrough(ds, rack);
      for (let index = 0; index < 4; index++) {
        const inRack = index >= 2 ? rack : undefined;
        const name = `soak-${index}`;
        const withDocker = index % 2 === 1;
        // Its rack as a label, before its daemon registers it: BGP peerings select on it.
        await ds.resources.create({ kind: 'Node', apiVersion: 'projectcalico.org/v3', metadata: { name, labels: { rack: inRack ? '2' : '1' } }, spec: {} });
        const host = await world.fabric.addHost(withDocker ? 'dock' : 'agent', inRack);
        const docker = withDocker ? await DockerAgent.start(host) : undefined;
        const extraArgs = ['--backend', routing === 'bird' ? 'bird' : 'vxlan', '--gc-interval', '5', '--gc-grace', '10', '--block-release-delay', '5', '--metrics-address', '', '--log-level', 'debug'];
        const settings = { etcdEndpoints: world.fabric.hostEndpoints, prefix, extraArgs, dir: mkdtempSync(join(tmpdir(), 'soak-daemon-')), logFile: join(logsDir, `${name}.log`) };
        const agent = new SoakAgent(index, name, inRack ? 2 : 1, host, new MesosAgent(host, world.pluginsDir), docker, settings);
        agents.push(agent);
        await agent.startDaemon();
        log(`agent ${name} (rack ${agent.rack}${docker ? ', dockerd' : ''}) up`);
      }
      if (routing === 'bird') {
        const neighbours = agents.map((a) => ({ address: hostAddress(a.index, rack), asNumber: AS_NUMBER }));
        reflector = await BirdRouter.start(rack.router, rack.gateway, AS_NUMBER, neighbours, { reflector: true, logFile: join(logsDir, 'reflector.log') });
      }
      for (const agent of agents) {
        for (const network of NETWORKS) await agent.docker?.docker('network', 'create', '-d', DOCKER_DRIVERS.driver, '--ipam-driver', DOCKER_DRIVERS.ipamDriver, network);
      }
      return new SoakWorld(world, prefix, ds, ipam, routing, agents, reflector, logsDir);
    } catch (err) {
      for (const agent of agents) await agent.destroy().catch(() => undefined);
      await reflector?.destroy();
      await world.destroy();
      throw err;
    }
  }

  /**
   * The CNI network config of `network` on `agent`: through its daemon; on a Docker agent the
   * plugin works alone (that daemon runs in dockerd's mount namespace, where the task's namespace
   * file is not mounted), and the daemon programs the task's policy from its record.
   */
  cniNetwork(agent: SoakAgent, network: NetworkName): { name: string; type: string; [key: string]: unknown } {
    const through = agent.docker ? { daemon_socket: '' } : { no_policy: false, daemon_socket: agent.cniSocket };
    return this.world.network(network, this.prefix, agent.name, { ...through, etcd_timeout_ms: 3000 });
  }

  async destroy(): Promise<void> {
    for (const agent of this.agents) await agent.destroy().catch(() => undefined);
    await this.reflector?.destroy();
    await this.world.destroy();
  }
}

/** Agents' addresses as the fabric gives them: .11 and .12 on the first rack's link, then in the rack. */
function hostAddress(index: number, rack: Rack): string {
  return index < 2 ? `10.99.0.${11 + index}` : rack.subnet.replace(/0\.0\/24$/, `0.${11 + index - 2}`);
}

/** BGP for the soak: no mesh; every agent peers with the route reflector on the rack router. */
async function reflectThrough(ds: Datastore, rack: Rack): Promise<void> {
  const resource = (kind: 'BGPPeer' | 'BGPConfiguration', name: string, spec: JsonObject) =>
    ({ kind, apiVersion: 'projectcalico.org/v3' as const, metadata: { name }, spec });
  await ds.resources.create(resource('BGPConfiguration', 'default', { nodeToNodeMeshEnabled: false, asNumber: AS_NUMBER }));
  // The first rack reaches the router on its link, the second on its own.
  await ds.resources.create(resource('BGPPeer', 'reflector-uplink', { nodeSelector: 'rack == "1"', peerIP: rack.uplink, asNumber: AS_NUMBER }));
  await ds.resources.create(resource('BGPPeer', 'reflector-rack', { nodeSelector: 'rack == "2"', peerIP: rack.gateway, asNumber: AS_NUMBER }));
}
