/**
 * A simulated datacenter made of network namespaces: a fabric namespace with a bridge and etcd,
 * and host namespaces ("agents") joined to the bridge by one veth each: the first rack, on
 * 10.99.0.0/24. More racks sit behind a router each (a namespace with forwarding on, on the
 * fabric's bridge and on a bridge of its own), on 10.98.0.0/24, 10.97.0.0/24...: their hosts reach
 * the others only through it, and it knows nothing of workload addresses. No namespace gets a
 * route to the outside; everything is removed by destroy(), or when the test process exits.
 */
import { applyNftScript, deleteNftTable } from '../shared/dataplane/nftables';
import { EtcdServer } from './etcd';
import { Netns } from './netns';

export const FABRIC_ADDRESS = '10.99.0.1';

/** A rack behind a router: its subnet, and its hosts. */
export class Rack {
  readonly hosts: Netns[] = [];

  constructor(
    /** 1 for 10.98.0.0/24, 2 for 10.97.0.0/24... */
    readonly index: number,
    readonly router: Netns,
  ) {}

  get subnet(): string {
    return `10.${99 - this.index}.0.0/24`;
  }

  /** The router's address on the first rack's link. */
  get uplink(): string {
    return `10.99.0.${255 - this.index}`;
  }

  /** The router's address in this rack: its hosts' gateway to every other rack. */
  get gateway(): string {
    return `10.${99 - this.index}.0.1`;
  }
}

export class Fabric {
  readonly hosts: Netns[] = [];
  readonly racks: Rack[] = [];

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

  /**
   * A new host namespace with address .(10+n)/24 on its eth0: on the fabric (10.99.0.0/24), or in
   * `rack`, with routes to the other racks through their routers.
   */
  async addHost(label: string, rack?: Rack): Promise<Netns> {
    const host = await Netns.create(label);
    const hosts = rack ? rack.hosts : this.hosts;
    hosts.push(host);
    const [bridgeNs, bridge, subnet] = rack ? [rack.router, 'br1', rack.subnet] : [this.fabric, 'br0', '10.99.0.0/24'];
    const fabricEnd = `h${hosts.length}`;
    await bridgeNs.ip('link', 'add', fabricEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.name);
    await bridgeNs.ip('link', 'set', fabricEnd, 'master', bridge);
    await bridgeNs.ip('link', 'set', fabricEnd, 'up');
    await host.ip('addr', 'add', `${subnet.replace(/0\.0\/24$/, `0.${10 + hosts.length}`)}/24`, 'dev', 'eth0');
    await host.ip('link', 'set', 'eth0', 'up');
    for (const other of this.racks) {
      if (other === rack) continue;
      await host.ip('route', 'add', other.subnet, 'via', rack ? rack.gateway : other.uplink);
    }
    if (rack) await host.ip('route', 'add', '10.99.0.0/24', 'via', rack.gateway);
    return host;
  }

  /** A new rack behind a router of its own on the fabric's link; the hosts already there get a route to it. */
  async addRack(): Promise<Rack> {
    const rack = new Rack(this.racks.length + 1, await Netns.create('rtr'));
    this.racks.push(rack);
    const { router } = rack;
    await router.ip('link', 'add', 'br1', 'type', 'bridge');
    await router.ip('addr', 'add', `${rack.gateway}/24`, 'dev', 'br1');
    await router.ip('link', 'set', 'br1', 'up');
    await this.fabric.ip('link', 'add', `r${rack.index}`, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', router.name);
    await this.fabric.ip('link', 'set', `r${rack.index}`, 'master', 'br0');
    await this.fabric.ip('link', 'set', `r${rack.index}`, 'up');
    await router.ip('addr', 'add', `${rack.uplink}/24`, 'dev', 'uplink');
    await router.ip('link', 'set', 'uplink', 'up');
    await router.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    for (const other of this.racks) if (other !== rack) await router.ip('route', 'add', other.subnet, 'via', other.uplink);
    for (const ns of [this.fabric, ...this.hosts]) await ns.ip('route', 'add', rack.subnet, 'via', rack.uplink);
    for (const other of this.racks) for (const host of other === rack ? [] : other.hosts) await host.ip('route', 'add', rack.subnet, 'via', other.gateway);
    return rack;
  }

  /**
   * Cuts `member` off from the other members and from every host, as a dropped link would: what
   * it sends goes nowhere (its group's packets, `meta skgid`), and what is sent to its ports too.
   * Connections stay open and silent; nothing is refused. The test process reaches it still (on
   * its unix socket). Undone by reconnect().
   */
  async cutOff(member: EtcdServer): Promise<void> {
    const table = this.cutTable(member);
    await applyNftScript('cut off an etcd member', [
      `table ${table} {`,
      `  chain output { type filter hook output priority 0; meta skgid ${member.gid} drop; }`,
      `  chain input { type filter hook input priority 0; tcp dport { ${member.clientPort}, ${member.peerPort} } drop; }`,
      '}',
    ].join('\n'), { netns: this.fabric.path });
  }

  /**
   * Cuts `member` off from the other members only: clients still reach it and it answers them, but
   * it hears from no leader, as a member on the wrong side of a partition does. The peers share
   * one address, so a connection is told by its ports: to or from the member's peer port, or from
   * the member's group to another's peer port; each is marked as it is seen, and a marked
   * connection carries nothing either way. Undone by reconnect().
   */
  async cutFromPeers(member: EtcdServer): Promise<void> {
    const others = this.members.filter((m) => m !== member).map((m) => m.peerPort).join(', ');
    const mark = 'ct mark set 0x5c';
    await applyNftScript('cut an etcd member off from the others', [
      `table ${this.cutTable(member)} {`,
      '  chain output {',
      '    type filter hook output priority 0;',
      `    meta skgid ${member.gid} tcp dport { ${others} } ${mark}`,
      `    tcp sport ${member.peerPort} ${mark}`,
      `    tcp dport ${member.peerPort} ${mark}`,
      '    ct mark 0x5c drop',
      '  }',
      '  chain input {',
      '    type filter hook input priority 0;',
      `    tcp sport ${member.peerPort} drop`,
      `    tcp dport ${member.peerPort} drop`,
      '    ct mark 0x5c drop',
      '  }',
      '}',
    ].join('\n'), { netns: this.fabric.path });
  }

  async reconnect(member: EtcdServer): Promise<void> {
    await deleteNftTable(this.cutTable(member), { netns: this.fabric.path });
  }

  /** The one table either cut of `member` lives in, so that reconnect() undoes whichever it was. */
  private cutTable(member: EtcdServer): string {
    return `inet sim-cut-m${this.members.indexOf(member)}`;
  }

  /** Drops everything between `host` and etcd's client ports, both ways, until letThrough(). */
  async cutFromEtcd(host: Netns): Promise<void> {
    const ports = this.members.map((m) => m.clientPort).join(', ');
    await applyNftScript('cut a host off from etcd', [
      'table inet sim-cut-etcd {',
      `  chain output { type filter hook output priority 0; ip daddr ${FABRIC_ADDRESS} tcp dport { ${ports} } drop; }`,
      `  chain input { type filter hook input priority 0; ip saddr ${FABRIC_ADDRESS} tcp sport { ${ports} } drop; }`,
      '}',
    ].join('\n'), { netns: host.path });
  }

  async letThrough(host: Netns): Promise<void> {
    await deleteNftTable('inet sim-cut-etcd', { netns: host.path });
  }

  async destroy(): Promise<void> {
    for (const member of this.members) await member.destroy();
    for (const host of [...this.hosts, ...this.racks.flatMap((r) => r.hosts)]) await host.destroy();
    for (const rack of this.racks) await rack.router.destroy();
    await this.fabric.destroy();
  }
}
