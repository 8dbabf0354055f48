/** The CNI attachment an invocation is about, and what follows from it on the container side. */
import { createHash } from 'node:crypto';
import type { CniAttachment } from '../shared/endpoints/identity';
import type { NetConf } from './config';
import type { CniEnv } from './env';

export function attachmentOf(conf: NetConf, env: CniEnv): CniAttachment {
  return { orchestrator: 'cni', node: conf.nodename, network: conf.name, containerId: env.containerId, ifname: env.ifname };
}

/**
 * The metric of an interface's gateway and default routes: eth0 keeps the preferred 0, ethN gets
 * 100 + N (Mesos names a container's networks eth0, eth1... in order). Any other name gets a
 * metric from a hash of the name, from 1000 up: two such interfaces of one container must not
 * get equal routes, which the kernel refuses.
 */
export function routeMetricFor(ifname: string): number {
  if (ifname === 'eth0') return 0;
  const n = /^eth(\d{1,4})$/.exec(ifname);
  if (n) return 100 + Number(n[1]);
  return 1000 + (createHash('sha1').update(ifname).digest().readUInt32BE(0) % 1_000_000);
}
