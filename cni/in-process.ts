/**
 * The whole plugin, run in this process: loaded only when no node daemon answers, because
 * compiling the core and its etcd client is most of a plugin's start-up time.
 */
import { Connections } from '../shared/connections';
import type { Invocation, Outcome } from '../shared/daemon-forward';
import { runCni, type PluginKind } from './skel';

export async function runInProcess(kind: PluginKind, invocation: Invocation): Promise<Outcome> {
  const connections = new Connections();
  try {
    return await runCni(kind, invocation, connections, { standalone: true });
  } finally {
    await connections.close();
  }
}
