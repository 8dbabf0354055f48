/**
 * calico_mesos run in this process: loaded only when no node daemon answers, because compiling
 * the core and its etcd client is most of the executable's start-up time.
 */
import { Connections } from '../shared/connections';
import type { Invocation, Outcome } from '../shared/daemon-forward';
import { stderrSink } from '../shared/log';
import { runNetmodules } from './run';

export async function runInProcess(invocation: Invocation): Promise<Outcome> {
  const connections = new Connections();
  try {
    return await runNetmodules(invocation, connections, [stderrSink], true);
  } finally {
    await connections.close();
  }
}
