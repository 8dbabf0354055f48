/**
 * Finds this host's endpoints whose workload is gone without a DEL (an agent crash, a killed
 * runtime): no host veth, no network namespace, and (Docker) no container attached any more. Only
 * after they have looked gone for the whole grace period are their addresses released and their
 * records deleted; anything uncertain (Docker unreachable) counts as alive.
 */
import { handleId } from '../cni/identity';
import type { DockerApi } from '../cnm/docker-api';
import type { Datastore, Resource } from '../shared/datastore';
import { localLinks, netnsExists } from '../shared/dataplane/ip-command';
import { DOCKER_NETWORK_ANNOTATION, NETNS_ANNOTATION } from '../shared/endpoints/workload-endpoint';
import { messageOf } from '../shared/errors';
import type { Ipam } from '../shared/ipam/ipam';
import type { Logger } from '../shared/log';
import { parseAddress } from '../shared/net';

export interface GcSettings {
  readonly node: string;
  readonly intervalMs: number;
  readonly graceMs: number;
}

type Endpoint = Resource<'WorkloadEndpoint'>;

export class GarbageCollector {
  /** Endpoint -> when it was first seen gone. */
  private readonly suspects = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly datastore: () => Promise<{ ds: Datastore; ipam: Ipam }>,
    private readonly docker: DockerApi | undefined,
    private readonly settings: GcSettings,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.settings.intervalMs <= 0) return;
    const tick = () => {
      this.running = this.collect().catch((err: unknown) => this.log.warning('garbage collection failed; will retry', { error: messageOf(err) }));
      void this.running.then(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.settings.intervalMs);
      });
    };
    this.timer = setTimeout(tick, this.settings.intervalMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One pass; returns the endpoints it cleaned up. */
  async collect(now = Date.now()): Promise<string[]> {
    const { ds, ipam } = await this.datastore();
    const endpoints = (await ds.resources.list('WorkloadEndpoint')).filter((e) => e.spec.node === this.settings.node);
    const links = await localLinks();
    const cleaned: string[] = [];
    const present = new Set<string>();
    for (const endpoint of endpoints) {
      const key = `${endpoint.metadata.namespace}/${endpoint.metadata.name}`;
      present.add(key);
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
    for (const key of this.suspects.keys()) if (!present.has(key)) this.suspects.delete(key);
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

  /** Addresses first (all of a handle at once), then the record: a failure half way is retried next pass. */
  private async cleanUp(ds: Datastore, ipam: Ipam, endpoint: Endpoint): Promise<void> {
    if (endpoint.spec.orchestrator === 'cni') {
      for (const profile of endpoint.spec.profiles) await ipam.releaseByHandle(handleId(profile, endpoint.spec.containerID ?? endpoint.spec.workload ?? ''));
    } else {
      await ipam.release(endpoint.spec.ipNetworks.map((n) => parseAddress(n.split('/')[0]!, 'ipNetworks')));
    }
    await ds.resources.delete('WorkloadEndpoint', endpoint.metadata.name, endpoint.metadata.namespace, endpoint.metadata.resourceVersion);
    this.log.info('collected the endpoint of a workload that is gone', { endpoint: endpoint.metadata.name, addresses: endpoint.spec.ipNetworks.join(',') });
  }
}
