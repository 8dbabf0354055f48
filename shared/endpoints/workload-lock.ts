/**
 * One operation at a time per workload on this host (CNI ADD, DEL and GC; net-modules isolate and
 * cleanup), whichever process runs it. Wiring replaces a host link of its own owner left by a
 * crashed attempt: without the lock that could be a concurrent attempt's live link, and two
 * wirings would each undo the other.
 */
import { withHostLock } from '../host-lock';
import { identityKey, type Workload } from './identity';

/** Longer than an operation takes with its etcd calls slow; then the caller is told to try again. */
const WORKLOAD_LOCK_WAIT_MS = 30_000;

function describe(workload: Workload): string {
  switch (workload.orchestrator) {
    case 'cni':
      return `container ${workload.containerId} interface ${workload.ifname}`;
    case 'mesos':
      return `container ${workload.containerId}`;
    case 'libnetwork':
      return `endpoint ${workload.endpointId}`;
  }
}

export function exclusively<T>(workload: Workload, work: () => Promise<T>): Promise<T> {
  return withHostLock(identityKey(workload), describe(workload), WORKLOAD_LOCK_WAIT_MS, work);
}
