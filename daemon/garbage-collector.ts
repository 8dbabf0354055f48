/**
 * Finds this host's workloads that are gone without a DEL (an agent crash, a killed runtime) and
 * gives back exactly what they owned:
 * - endpoints with no host veth, no network namespace and (Docker) no container attached any
 *   more, once they have looked gone for the whole grace period: their addresses and record;
 * - addresses of this host that no endpoint lists (an ADD or a Docker request that never
 *   finished: a crash between allocating and recording, or a retry after one), once older than
 *   the grace period.
 * Only this host's own keys are read: its endpoints by their name prefix, its blocks by its
 * affinities. Anything uncertain (Docker unreachable) counts as alive.
 */
import type { DockerApi } from '../cnm/docker-api';
import { MalformedDataError, type Datastore, type Resource } from '../shared/datastore';
import { messageOf } from '../shared/errors';
import { localLinks, netnsExists } from '../shared/dataplane/ip-command';
import { endpointNameOf, hostEndpointRanges, isDockerHandle, parseHandle } from '../shared/endpoints/identity';
import { releaseWorkloadAddresses } from '../shared/endpoints/teardown';
import { DOCKER_NETWORK_ANNOTATION, NETNS_ANNOTATION, deleteEndpointOf, recordedIpamHandles, workloadOfEndpoint } from '../shared/endpoints/workload-endpoint';
import { ownedBy } from '../shared/ipam/block';
import type { Ipam } from '../shared/ipam/ipam';
import type { Logger } from '../shared/log';
import { Periodic } from './periodic';
import { formatAddress, parseAddress, type IpAddress } from '../shared/net';

export interface GcSettings {
  readonly node: string;
  readonly intervalMs: number;
  readonly graceMs: number;
}

type Endpoint = Resource<'WorkloadEndpoint'>;

/** What this host's endpoints list: by endpoint name, and by the net-modules handles they record. */
interface Recorded {
  readonly endpoints: ReadonlyMap<string, ReadonlySet<string>>;
  readonly netmodules: ReadonlyMap<string, ReadonlySet<string>>;
}

export class GarbageCollector {
  /** Endpoint -> when it was first seen gone. */
  private readonly suspects = new Map<string, number>();
  /** The keys of this host's endpoints that could not be read in the last pass (said once while they last). */
  private unreadable = '';
  private readonly periodic: Periodic;

  constructor(
    private readonly datastore: () => Promise<{ ds: Datastore; ipam: Ipam }>,
    private readonly docker: DockerApi | undefined,
    private readonly settings: GcSettings,
    private readonly log: Logger,
  ) {
    this.periodic = new Periodic(() => this.collect(), settings.intervalMs, log, 'garbage collection failed; will retry');
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One pass; returns what it cleaned up: endpoint keys, and `address <a>` for addresses without one. */
  async collect(now = Date.now()): Promise<string[]> {
    const { ds, ipam } = await this.datastore();
    const links = await localLinks();
    const cleaned: string[] = [];
    const present = new Set<string>();
    /** Endpoint name -> the addresses it lists. */
    const recorded = new Map<string, Set<string>>();
    /** A net-modules allocation handle -> the addresses endpoints list under it. */
    const netmodules = new Map<string, Set<string>>();
    /** Endpoints of this host that cannot be read: what they list is unknown. */
    const unreadable: string[] = [];
    const onMalformed = (err: MalformedDataError) => unreadable.push(err.key);
    for (const range of hostEndpointRanges(this.settings.node)) {
      for await (const page of ds.resources.pages('WorkloadEndpoint', { ...range, onMalformed })) {
        for (const endpoint of page) {
          if (endpoint.spec.node !== this.settings.node) continue;
          const key = `${endpoint.metadata.namespace}/${endpoint.metadata.name}`;
          present.add(key);
          let listed: Set<string>;
          try {
            listed = new Set(endpoint.spec.ipNetworks.map((n) => formatAddress(parseAddress(n.split('/')[0]!, 'spec.ipNetworks'))));
          } catch (err) {
            onMalformed(new MalformedDataError(ds.keys.resource('WorkloadEndpoint', endpoint.metadata.name, endpoint.metadata.namespace), messageOf(err)));
            continue;
          }
          recorded.set(endpoint.metadata.name, listed);
          for (const handle of recordedIpamHandles(endpoint)) netmodules.set(handle, new Set([...(netmodules.get(handle) ?? []), ...listed]));
          if (await this.alive(endpoint, links)) {
            this.suspects.delete(key);
            continue;
          }
          const since = this.suspects.get(key) ?? now;
          this.suspects.set(key, since);
          if (now - since < this.settings.graceMs) continue;
          await this.cleanUp(ds, ipam, endpoint);
          this.suspects.delete(key);
          cleaned.push(key);
        }
      }
    }
    for (const key of this.suspects.keys()) if (!present.has(key)) this.suspects.delete(key);
    // An endpoint that cannot be read may list any address of this host: none is judged unrecorded
    // until it reads again (or goes). The rest of the pass went on without it.
    const held = unreadable.sort().join('\n');
    if (held !== this.unreadable && held !== '') this.log.warning('addresses without an endpoint are not collected while an endpoint of this host cannot be read', { endpoints: unreadable.length, first: unreadable[0] });
    this.unreadable = held;
    if (held !== '') return cleaned;
    cleaned.push(...(await this.collectUnrecorded(ipam, { endpoints: recorded, netmodules }, now)));
    return cleaned;
  }

  private async alive(endpoint: Endpoint, links: ReadonlySet<string>): Promise<boolean> {
    if (links.has(endpoint.spec.interfaceName)) return true;
    const netns = endpoint.metadata.annotations?.[NETNS_ANNOTATION];
    if (netns && (await netnsExists(netns))) return true;
    const network = endpoint.metadata.annotations?.[DOCKER_NETWORK_ANNOTATION];
    if (endpoint.spec.orchestrator === 'libnetwork' && network) {
      if (!this.docker) return true;
      try {
        return await this.docker.endpointAttached(network, endpoint.spec.endpoint);
      } catch {
        return true; // cannot tell: never collect on a guess
      }
    }
    return false;
  }

  /** Addresses first (exactly the workload's own), then the record: a failure half way is retried next pass. */
  private async cleanUp(ds: Datastore, ipam: Ipam, endpoint: Endpoint): Promise<void> {
    const workload = workloadOfEndpoint(endpoint);
    if (!workload) {
      this.log.warning('an endpoint of this host names no workload of ours; left alone', { endpoint: endpoint.metadata.name });
      return;
    }
    const addresses = endpoint.spec.ipNetworks.map((n) => parseAddress(n.split('/')[0]!, 'ipNetworks'));
    await releaseWorkloadAddresses(ipam, workload, addresses, recordedIpamHandles(endpoint));
    await deleteEndpointOf(ds, workload);
    this.log.info('collected the endpoint of a workload that is gone', { endpoint: endpoint.metadata.name, addresses: endpoint.spec.ipNetworks.join(',') });
  }

  /**
   * This host's allocations in its own blocks that no endpoint of their workload lists, older
   * than the grace period: an ADD or a Docker request that crashed half way, or the first try of
   * an ADD that a plugin repeated itself when the daemon died under it.
   */
  private async collectUnrecorded(ipam: Ipam, recorded: Recorded, now: number): Promise<string[]> {
    const cleaned: string[] = [];
    for (const cidr of await ipam.hostBlocks(this.settings.node)) {
      for (const owner of await ipam.addressesIn(cidr)) {
        const { attributes, handle } = owner;
        if (attributes.node !== this.settings.node || !handle) continue;
        const stamp = Date.parse(attributes.timestamp ?? '');
        if (!Number.isFinite(stamp) || now - stamp < this.settings.graceMs) continue;
        const released = await this.releaseUnrecorded(ipam, owner.address, handle, attributes, recorded);
        if (released > 0) {
          this.log.info('collected an address whose workload never got an endpoint', { address: formatAddress(owner.address), handle });
          cleaned.push(`address ${formatAddress(owner.address)}`);
        }
      }
    }
    return cleaned;
  }

  /** Releases an address of ours that its workload's endpoint does not list; how many were released. */
  private async releaseUnrecorded(ipam: Ipam, address: IpAddress, handle: string, attributes: Readonly<Record<string, string>>, recorded: Recorded): Promise<number> {
    const node = this.settings.node;
    const text = formatAddress(address);
    if (isDockerHandle(handle)) {
      // Docker ties an address to its endpoint at CreateEndpoint: an address that never joined
      // one, or whose endpoint is gone, is its handle's alone.
      const endpoint = attributes.endpoint ? endpointNameOf({ orchestrator: 'libnetwork', node, endpointId: attributes.endpoint }) : undefined;
      if (endpoint && recorded.endpoints.get(endpoint)?.has(text)) return 0;
      return (await ipam.release([address], ownedBy(handle))).released.length;
    }
    const workload = parseHandle(handle);
    // Not an allocation of ours to judge, or another host's workload borrowing from this host's block.
    if (!workload || workload.orchestrator === 'libnetwork' || workload.node !== node) return 0;
    // net-modules allocates under the isolator's uid: an address no endpoint lists under its
    // handle belongs to a container that never got isolated (or whose agent forgot it).
    if (workload.orchestrator === 'mesos') return recorded.netmodules.get(handle)?.has(text) ? 0 : (await ipam.release([address], ownedBy(handle))).released.length;
    const listed = recorded.endpoints.get(endpointNameOf(workload));
    if (listed?.has(text)) return 0;
    // No endpoint: everything the workload holds goes. An endpoint without this address (an ADD
    // repeated after a crash): this address alone.
    if (!listed) return releaseWorkloadAddresses(ipam, workload);
    return (await ipam.release([address], ownedBy(handle))).released.length;
  }

}
