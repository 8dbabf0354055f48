/** What one host's allocation needs to know, read in a single round trip. */
import { DEFAULT_IPAM_CONFIG, decodeAffinity, decodeEach, decodeIpamConfig, type AffinityState, type Datastore, type IpamConfigRecord } from '../datastore';
import type { IpVersion } from '../net/address';
import { formatCidr, type Cidr } from '../net/cidr';
import { AddressOutsidePoolsError, InvalidPoolError, NoUsablePoolError } from './errors';
import { poolFromEntry, type Pool } from './pool';

export interface HostAffinity {
  readonly cidr: Cidr;
  readonly state: AffinityState;
  readonly key: string;
  readonly modRevision: string;
}

export interface HostView {
  readonly node: string;
  readonly version: IpVersion;
  readonly pools: Pool[];
  /** This host's affinities of this IP version, by block CIDR text. */
  readonly affinities: Map<string, HostAffinity>;
  readonly config: IpamConfigRecord;
  readonly configKey: string;
  /** undefined when no config is stored (the defaults apply). */
  readonly configRevision: string | undefined;
}

export async function readHostView(ds: Datastore, node: string, version: IpVersion): Promise<HostView> {
  const configKey = ds.keys.ipamConfig();
  const [poolEntries, affinityEntries, configEntries] = await ds.kv.readMany([
    { prefix: ds.keys.resourcePrefix('IPPool') },
    { prefix: ds.keys.hostAffinityPrefix(node, version) },
    { key: configKey },
  ]);
  // A malformed pool or affinity is skipped alone: the host allocates from the rest.
  const affinities = new Map<string, HostAffinity>();
  for (const affinity of decodeEach(affinityEntries!, (entry) => {
    const named = ds.keys.affinityOf(entry.key);
    return named ? [{ cidr: named.cidr, state: decodeAffinity(entry.key, entry.value).state, key: entry.key, modRevision: entry.modRevision }] : [];
  }).flat()) affinities.set(formatCidr(affinity.cidr), affinity);
  const configEntry = configEntries![0];
  return {
    node,
    version,
    pools: decodeEach(poolEntries!, poolFromEntry),
    affinities,
    config: configEntry ? decodeIpamConfig(configEntry.key, configEntry.value) : DEFAULT_IPAM_CONFIG,
    configKey,
    configRevision: configEntry?.modRevision,
  };
}

/** The one owner of cached host views: read once, forgotten when a write shows them stale. */
export class HostViews {
  private readonly views = new Map<string, HostView>();

  constructor(private readonly ds: Datastore) {}

  /** The view, and whether it came from the cache (then it may be stale: writes guard on it). */
  async get(node: string, version: IpVersion): Promise<{ view: HostView; cached: boolean }> {
    const key = `${node}/${version}`;
    const cached = this.views.get(key);
    if (cached) return { view: cached, cached: true };
    const view = await readHostView(this.ds, node, version);
    this.views.set(key, view);
    return { view, cached: false };
  }

  /**
   * Runs `use` on the host's view. A refusal that rests on the pools (one named that is missing or
   * disabled, none usable, an address outside them) made on a cached view is made again on a fresh
   * one: a cached view never hides a pool written before the request began. (What a write relied
   * on is guarded by its revision, so a stale view of it costs a retry, never a wrong answer.)
   */
  async use<T>(node: string, version: IpVersion, use: (view: HostView, cached: boolean) => Promise<T>): Promise<T> {
    const { view, cached } = await this.get(node, version);
    try {
      return await use(view, cached);
    } catch (err) {
      if (!cached || !(err instanceof InvalidPoolError || err instanceof NoUsablePoolError || err instanceof AddressOutsidePoolsError)) throw err;
      this.forget(node, version);
      const fresh = await this.get(node, version);
      return use(fresh.view, fresh.cached);
    }
  }

  forget(node: string, version?: IpVersion): void {
    for (const v of version === undefined ? ([4, 6] as const) : [version]) this.views.delete(`${node}/${v}`);
  }

  clear(): void {
    this.views.clear();
  }
}
