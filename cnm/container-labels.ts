/**
 * Docker containers' labels as their endpoints' labels, so that policy selects Docker tasks as it
 * selects Mesos ones (Calico's libnetwork plugin does the same with
 * CALICO_LIBNETWORK_LABEL_ENDPOINTS): a container label `org.projectcalico.label.<key>=<value>`
 * becomes the endpoint label `<key>=<value>`, sanitised as Mesos labels are, with the same keys
 * reserved (network membership and Calico's own are never taken from a task).
 *
 * Docker shows a container on its network only once it has started, which is after Join: the
 * labels are read in the background after Join, retried while Docker does not show the container
 * (or does not answer), and written onto the endpoint when it does. Until then the endpoint works
 * with the labels it has.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ConflictError, type Datastore, type Resource } from '../shared/datastore';
import type { DockerEndpoint } from '../shared/endpoints/identity';
import { sanitiseLabels } from '../shared/endpoints/labels';
import { endpointOf } from '../shared/endpoints/workload-endpoint';
import { messageOf } from '../shared/errors';
import type { Logger } from '../shared/log';
import type { DockerApi } from './docker-api';

export const DOCKER_LABEL_PREFIX = 'org.projectcalico.label.';
/** Labels the product writes on every endpoint: kept whatever the container says. */
const OWN_LABEL_PREFIX = 'projectcalico.org/';

const RETRY_MS = { first: 100, max: 5000 };
/** How long a container may take to show up in Docker before its labels are given up on. */
const PATIENCE_MS = 10 * 60_000;

/** The endpoint labels a container's labels give: those with our prefix, the prefix removed, sanitised; reserved keys refused. */
export function endpointLabelsOf(containerLabels: Readonly<Record<string, string>>): { labels: Record<string, string>; refused: string[]; dropped: string[] } {
  const pairs = Object.entries(containerLabels).filter(([key]) => key.startsWith(DOCKER_LABEL_PREFIX)).map(([key, value]) => [key.slice(DOCKER_LABEL_PREFIX.length), value] as const);
  return sanitiseLabels(pairs);
}

export class ContainerLabels {
  /** Endpoints whose labels are being fetched, so a second Join does not start a second fetch. */
  private readonly pending = new Set<string>();
  private stopped = false;

  constructor(
    private readonly datastore: () => Promise<Datastore>,
    private readonly docker: DockerApi,
    private readonly log: Logger,
  ) {}

  /** Fetches the container's labels (in the background, retrying) and writes them onto its endpoint. */
  apply(networkId: string, workload: DockerEndpoint): void {
    if (this.pending.has(workload.endpointId)) return;
    this.pending.add(workload.endpointId);
    void this.fetch(networkId, workload).finally(() => this.pending.delete(workload.endpointId));
  }

  private async fetch(networkId: string, workload: DockerEndpoint): Promise<void> {
    const started = Date.now();
    let delay = RETRY_MS.first;
    let told = false;
    while (!this.stopped) {
      try {
        const labels = await this.docker.containerLabels(networkId, workload.endpointId);
        if (labels !== undefined) return await this.write(workload, labels);
      } catch (err) {
        if (!told) this.log.warning('cannot read the container\'s labels from Docker yet; the endpoint works without them meanwhile', { endpoint: workload.endpointId, error: messageOf(err) });
        told = true;
      }
      if (Date.now() - started > PATIENCE_MS) {
        this.log.warning('gave up reading the container\'s labels: Docker never showed it', { endpoint: workload.endpointId });
        return;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, RETRY_MS.max);
    }
  }

  /** The endpoint's own labels replaced by the container's (ours kept), in a compare-and-swap loop. */
  private async write(workload: DockerEndpoint, containerLabels: Readonly<Record<string, string>>): Promise<void> {
    const { labels, refused, dropped } = endpointLabelsOf(containerLabels);
    if (refused.length > 0) this.log.warning('container labels with reserved keys were dropped: only joining a network makes a container its member', { endpoint: workload.endpointId, labels: refused.join(',') });
    if (dropped.length > 0) this.log.warning('container labels whose keys are no label keys were dropped', { endpoint: workload.endpointId, labels: dropped.join(',').slice(0, 200) });
    const ds = await this.datastore();
    for (let attempt = 0; attempt < 5; attempt++) {
      const endpoint = await endpointOf(ds, workload);
      if (!endpoint) return; // gone meanwhile: nothing to label
      const own = Object.fromEntries(Object.entries(endpoint.metadata.labels ?? {}).filter(([key]) => key.startsWith(OWN_LABEL_PREFIX)));
      const wanted = { ...labels, ...own };
      if (sameLabels(endpoint.metadata.labels ?? {}, wanted)) return;
      try {
        await ds.resources.update({ ...endpoint, metadata: { ...endpoint.metadata, labels: wanted } } as Resource<'WorkloadEndpoint'>);
        this.log.info('container labels applied', { endpoint: workload.endpointId, labels: Object.keys(labels).join(',') });
        return;
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
      }
    }
  }

  stop(): void {
    this.stopped = true;
  }
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}
