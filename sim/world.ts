/**
 * One simulated datacenter for a test file or a benchmark: a fabric with etcd, agents on it, our
 * plugins installed, and datastore clients under prefixes of their own (etcd_prefix in the network
 * config), so that scenarios sharing the fabric never see each other's keys.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Datastore, etcdSettingsFrom } from '../shared/datastore';
import { Ipam } from '../shared/ipam/ipam';
import { installPlugins } from './cni-exec';
import { uniquePrefix } from './etcd';
import { Fabric, type Rack } from './fabric';
import { MesosAgent, type NetworkConfig } from './mesos-agent';

export class CniWorld {
  readonly agents: MesosAgent[] = [];
  private readonly clients: Datastore[] = [];
  readonly logDir = mkdtempSync(join(tmpdir(), 'cni-logs-'));

  private constructor(
    readonly fabric: Fabric,
    readonly pluginsDir: string,
  ) {}

  static async create(options: { etcdMembers?: number } = {}): Promise<CniWorld> {
    return new CniWorld(await Fabric.create(options), installPlugins());
  }

  /** An agent on the fabric's link, or in `rack` (Fabric.addRack). */
  async addAgent(rack?: Rack): Promise<MesosAgent> {
    const agent = new MesosAgent(await this.fabric.addHost('agent', rack), this.pluginsDir);
    this.agents.push(agent);
    return agent;
  }

  /** A datastore client under `prefix`, and pools for it. */
  async datastore(prefix: string): Promise<{ ds: Datastore; ipam: Ipam }> {
    const ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: this.fabric.members.map((m) => m.endpoint).join(',') }, {}), prefix });
    this.clients.push(ds);
    return { ds, ipam: new Ipam(ds) };
  }

  /** A fresh prefix with an IPv4 and an IPv6 pool in it. */
  async scenario(label: string, pools: { v4?: string; v6?: string } = {}): Promise<{ prefix: string; ds: Datastore; ipam: Ipam }> {
    const prefix = uniquePrefix(label);
    const { ds, ipam } = await this.datastore(prefix);
    await ipam.createPool('pool4', { cidr: pools.v4 ?? '10.200.0.0/16' });
    await ipam.createPool('pool6', { cidr: pools.v6 ?? 'fd00:200::/64' });
    return { prefix, ds, ipam };
  }

  /**
   * A network config for an agent of this world. Its plugins leave the policy table alone
   * (`no_policy`) unless `extra` says otherwise: most agents here run no daemon, and a plugin on
   * its own would close every workload (see the README's security model).
   */
  network(name: string, prefix: string, node: string, extra: Record<string, unknown> = {}): NetworkConfig {
    return {
      no_policy: true,
      cniVersion: '0.2.0',
      name,
      type: 'calico',
      etcd_endpoints: this.fabric.hostEndpoints,
      etcd_prefix: prefix,
      nodename: node,
      log_file_path: join(this.logDir, 'cni.log'),
      ipam: { type: 'calico-ipam' },
      ...extra,
    };
  }

  async destroy(): Promise<void> {
    for (const ds of this.clients) ds.close();
    for (const agent of this.agents) await agent.cleanup();
    await this.fabric.destroy();
    rmSync(this.pluginsDir, { recursive: true, force: true });
    rmSync(this.logDir, { recursive: true, force: true });
  }
}
