/** calico_mesos run in this process, with connections of its own for this one command. */
import { Connections } from '../shared/connections';
import { hostLinksDeleted } from '../shared/dataplane/workload';
import type { Invocation, Outcome } from '../shared/invocation';
import { stderrSink } from '../shared/log';
import { runNetmodules } from './run';

export async function runInProcess(invocation: Invocation): Promise<Outcome> {
  const connections = new Connections();
  try {
    return await runNetmodules(invocation, connections, [stderrSink], true);
  } finally {
    // Links it began to delete go before the process does.
    await Promise.all([hostLinksDeleted(), connections.close()]);
  }
}
