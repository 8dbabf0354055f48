/** Datastore clients and an Ipam over a test's own etcd prefix. */
import { Datastore, etcdSettingsFrom, type EtcdSettings } from '../../shared/datastore';
import { Ipam } from '../../shared/ipam/ipam';
import { uniquePrefix, type EtcdServer } from '../../sim/etcd';

export class IpamEnv {
  private readonly clients: Datastore[] = [];
  readonly prefix: string;

  constructor(
    private readonly etcd: EtcdServer,
    label: string,
    private readonly overrides: Partial<EtcdSettings> = {},
    prefix = uniquePrefix(label),
  ) {
    this.prefix = prefix;
  }

  /** Clients of the same data with other settings (another deadline). */
  with(overrides: Partial<EtcdSettings>): IpamEnv {
    return new IpamEnv(this.etcd, '', overrides, this.prefix);
  }

  /** A new, separate etcd connection (a separate simulated host or process). */
  async datastore(): Promise<Datastore> {
    const ds = await Datastore.connect({ ...etcdSettingsFrom({ etcd_endpoints: this.etcd.endpoint }, {}), prefix: this.prefix, ...this.overrides });
    this.clients.push(ds);
    return ds;
  }

  async ipam(): Promise<Ipam> {
    return new Ipam(await this.datastore());
  }

  close(): void {
    for (const ds of this.clients) ds.close();
  }
}
