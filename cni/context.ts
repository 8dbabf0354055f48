/** Everything one CNI command needs, built once per invocation. */
import type { Datastore } from '../shared/datastore';
import type { Ipam } from '../shared/ipam/ipam';
import type { Logger } from '../shared/log';
import type { Connections } from '../shared/connections';
import type { NetConf } from './config';
import type { CniEnv } from './env';

export interface CniContext {
  readonly env: CniEnv;
  /** The caller's whole environment: passed on to delegated IPAM plugins. */
  readonly processEnv: NodeJS.ProcessEnv;
  readonly conf: NetConf;
  readonly log: Logger;
  readonly connections: Connections;
  /** Run by the plugin itself, with no node daemon (which keeps the policy table on its own). */
  readonly standalone: boolean;
}

export function datastoreOf(ctx: CniContext): Promise<Datastore> {
  return ctx.connections.datastore(ctx.conf.etcd);
}

export function ipamOf(ctx: CniContext): Promise<Ipam> {
  return ctx.connections.ipam(ctx.conf.etcd);
}
