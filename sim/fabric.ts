/**
 * A simulated datacenter made of network namespaces: a fabric namespace with a bridge and etcd,
 * and host namespaces ("agents") joined to the bridge by one veth each. No namespace gets a
 * route to the outside; everything is removed by destroy(), or when the test process exits.
 */
import { EtcdServer } from './etcd';
import { Netns } from './netns';

export const FABRIC_ADDRESS = '10.99.0.1';

export class Fabric {
  readonly hosts: Netns[] = [];

  private constructor(
    readonly fabric: Netns,
    /** The etcd members; one unless a cluster was asked for. */
    readonly members: EtcdServer[],
  ) {}

  /** The first member (with one member, the etcd). */
  get etcd(): EtcdServer {
    return this.members[0]!;
  }

  /** Every member, as an etcd_endpoints value for processes on the hosts. */
  get hostEndpoints(): string {
    return this.members.map((m) => m.hostEndpoint).join(',');
  }

  static async create(options: { etcdMembers?: number } = {}): Promise<Fabric> {
    const fabric = await Netns.create('fab');
    try {
      await fabric.ip('link', 'add', 'br0', 'type', 'bridge');
      await fabric.ip('addr', 'add', `${FABRIC_ADDRESS}/24`, 'dev', 'br0');
      await fabric.ip('link', 'set', 'br0', 'up');
      const of = options.etcdMembers ?? 1;
      // A cluster's members wait for each other: they start together.
      const members = await Promise.all(Array.from({ length: of }, (_, index) =>
        EtcdServer.start({ placement: { netnsPath: fabric.path, address: FABRIC_ADDRESS, ...(of > 1 ? { member: { index, of } } : {}) } })));
      return new Fabric(fabric, members);
    } catch (err) {
      await fabric.destroy();
      throw err;
    }
  }

  /** A new host namespace on the fabric, with address 10.99.0.(10+n)/24 on its eth0. */
  async addHost(label: string): Promise<Netns> {
    const n = this.hosts.length + 1;
    const host = await Netns.create(label);
    this.hosts.push(host);
    const fabricEnd = `h${n}`;
    await this.fabric.ip('link', 'add', fabricEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.name);
    await this.fabric.ip('link', 'set', fabricEnd, 'master', 'br0');
    await this.fabric.ip('link', 'set', fabricEnd, 'up');
    await host.ip('addr', 'add', `10.99.0.${10 + n}/24`, 'dev', 'eth0');
    await host.ip('link', 'set', 'eth0', 'up');
    return host;
  }

  async destroy(): Promise<void> {
    for (const member of this.members) await member.destroy();
    for (const host of this.hosts) await host.destroy();
    await this.fabric.destroy();
  }
}
