/**
 * The little of Docker's own API the driver needs: a network's name from its ID (the driver API
 * carries only IDs, and profiles are named after networks, as Calico's driver does), and the
 * labels of the container behind an endpoint (they become the endpoint's, as with Calico's
 * CALICO_LIBNETWORK_LABEL_ENDPOINTS).
 */
import { request } from 'node:http';
import { CalicoError } from '../shared/errors';

export class DockerApiError extends CalicoError {
  readonly code = 'DOCKER_API_FAILED';
}

const TIMEOUT_MS = 5000;

export class DockerApi {
  private readonly names = new Map<string, string>();

  /** `unix:///var/run/docker.sock` or `tcp://host:port`, as DOCKER_HOST. */
  constructor(readonly host: string) {
    if (!/^(unix:\/\/\/|tcp:\/\/)/.test(host)) throw new DockerApiError(`invalid Docker host "${host}": expected unix:///path or tcp://host:port`);
  }

  async networkName(networkId: string): Promise<string> {
    const cached = this.names.get(networkId);
    if (cached) return cached;
    const network = (await this.get(`/networks/${encodeURIComponent(networkId)}`)) as { Name?: unknown };
    if (typeof network.Name !== 'string') throw new DockerApiError(`Docker's answer for network ${networkId} has no name`);
    this.names.set(networkId, network.Name);
    return network.Name;
  }

  /** Whether Docker still has a container attached to the network through this endpoint. */
  async endpointAttached(networkId: string, endpointId: string): Promise<boolean> {
    return (await this.containerOf(networkId, endpointId)) !== undefined;
  }

  /**
   * The labels of the container attached to the network through this endpoint; undefined while
   * Docker shows no such container (it is still being created, or it is gone).
   */
  async containerLabels(networkId: string, endpointId: string): Promise<Record<string, string> | undefined> {
    const container = await this.containerOf(networkId, endpointId);
    if (container === undefined) return undefined;
    const inspected = (await this.get(`/containers/${encodeURIComponent(container)}/json`).catch((err: DockerApiError) => {
      if (/answered 404/.test(err.message)) return undefined;
      throw err;
    })) as { Config?: { Labels?: unknown } } | undefined;
    if (inspected === undefined) return undefined;
    const labels = inspected.Config?.Labels;
    if (labels === undefined || labels === null) return {};
    if (typeof labels !== 'object' || Array.isArray(labels) || Object.values(labels).some((v) => typeof v !== 'string')) {
      throw new DockerApiError(`Docker's answer for container ${container} has labels that are not a map of strings`);
    }
    return labels as Record<string, string>;
  }

  /** The ID of the container attached to the network through this endpoint, if any. */
  private async containerOf(networkId: string, endpointId: string): Promise<string | undefined> {
    const network = (await this.get(`/networks/${encodeURIComponent(networkId)}`).catch((err: DockerApiError) => {
      if (/answered 404/.test(err.message)) return { Containers: {} };
      throw err;
    })) as { Containers?: Record<string, { EndpointID?: string }> | null };
    return Object.entries(network.Containers ?? {}).find(([, c]) => c.EndpointID === endpointId)?.[0];
  }

  private get(path: string): Promise<unknown> {
    const target = this.host.startsWith('unix://')
      ? { socketPath: this.host.slice('unix://'.length), path }
      : { host: new URL(this.host).hostname, port: Number(new URL(this.host).port || 2375), path };
    return new Promise((resolve, reject) => {
      const req = request({ ...target, method: 'GET', timeout: TIMEOUT_MS }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new DockerApiError(`Docker at ${this.host} answered ${res.statusCode} for ${path}: ${body.trim()}`));
          try {
            resolve(JSON.parse(body));
          } catch {
            reject(new DockerApiError(`Docker at ${this.host} sent malformed JSON for ${path}`));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
      req.on('error', (err) => reject(new DockerApiError(`cannot reach Docker at ${this.host}: ${err.message}`)));
      req.end();
    });
  }
}
