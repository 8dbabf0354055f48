/**
 * What workloads may never reach on the network, whatever policy says (unless FelixConfiguration
 * allowDatastoreAccessFromWorkloads): the etcd endpoints this daemon uses, since a task that can
 * write the datastore can rewrite its own isolation, and this daemon's metrics address. Names are
 * resolved once, at start, within a bounded time.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from '../shared/log';
import type { ProtectedService } from '../shared/policy/calculator';

const LOOKUP_MS = 3000;

async function addressesOf(host: string, log: Logger): Promise<string[]> {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (isIP(bare)) return [bare];
  try {
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${LOOKUP_MS} ms`)), LOOKUP_MS).unref());
    const found = await Promise.race([lookup(bare, { all: true }), timeout]);
    return found.map((a) => a.address);
  } catch (err) {
    log.warning('cannot resolve a datastore endpoint: workloads are not kept from it by address', { host: bare, error: (err as Error).message });
    return [];
  }
}

function service(address: string, port: number): ProtectedService {
  return { address, version: isIP(address) === 6 ? 6 : 4, protocol: 'tcp', port };
}

/** `endpoints`: etcd's URLs (unix:// ones need no rule); `metrics`: HOST:PORT, or "" for none. */
export async function protectedServices(endpoints: readonly string[], metrics: string, log: Logger): Promise<ProtectedService[]> {
  const services: ProtectedService[] = [];
  for (const endpoint of endpoints) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      continue;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') continue;
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    for (const address of await addressesOf(url.hostname, log)) services.push(service(address, port));
  }
  const listen = /^(.*):(\d+)$/.exec(metrics);
  if (listen) {
    const host = listen[1]!.replace(/^\[(.*)\]$/, '$1');
    const port = Number(listen[2]);
    // On every address: the port on any of this host's addresses.
    if (host === '' || host === '0.0.0.0' || host === '::') services.push({ protocol: 'tcp', port });
    else for (const address of await addressesOf(host, log)) services.push(service(address, port));
  }
  return services;
}
