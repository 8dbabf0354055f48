/** The whole plugin, run in this process, with connections of its own for this one command. */
import { Connections } from '../shared/connections';
import { hostLinksDeleted } from '../shared/dataplane/workload';
import type { Invocation, Outcome } from '../shared/invocation';
import { runCni, type PluginKind } from './skel';

export async function runInProcess(kind: PluginKind, invocation: Invocation): Promise<Outcome> {
  const connections = new Connections();
  try {
    return await runCni(kind, invocation, connections, { standalone: true });
  } finally {
    // Links it began to delete go before the process does.
    await Promise.all([hostLinksDeleted(), connections.close()]);
  }
}
