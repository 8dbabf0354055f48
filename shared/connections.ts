/**
 * Datastore connections and their IPAM clients, one per distinct etcd setting. A plugin process
 * opens one and closes it at exit; the node daemon keeps them warm across requests, and every
 * request to one setting shares its IPAM client, so concurrent requests are served in batches.
 */
import { Datastore, type EtcdSettings } from './datastore';
import { Ipam } from './ipam/ipam';

export class Connections {
  private readonly open = new Map<string, Promise<{ datastore: Datastore; ipam: Ipam }>>();

  private entry(settings: EtcdSettings) {
    const key = JSON.stringify(settings);
    let entry = this.open.get(key);
    if (!entry) {
      entry = Datastore.connect(settings).then((datastore) => ({ datastore, ipam: new Ipam(datastore) }));
      // A failed connect is not cached: the next request tries again.
      entry.catch(() => this.open.delete(key));
      this.open.set(key, entry);
    }
    return entry;
  }

  async datastore(settings: EtcdSettings): Promise<Datastore> {
    return (await this.entry(settings)).datastore;
  }

  async ipam(settings: EtcdSettings): Promise<Ipam> {
    return (await this.entry(settings)).ipam;
  }

  async close(): Promise<void> {
    const entries = [...this.open.values()];
    this.open.clear();
    for (const entry of entries) {
      try {
        (await entry).datastore.close();
      } catch {
        // never connected
      }
    }
  }
}
