/**
 * Events the core publishes for whoever wants to count them (the node daemon's metrics), through
 * node:diagnostics_channel: publishing costs nothing when nobody subscribes, and the core never
 * depends on the metrics code.
 */
import { channel } from 'node:diagnostics_channel';

/** A compare-and-swap round lost to a concurrent writer: `{ operation }`. */
export const casConflicts = channel('calico.ipam.cas-conflict');
/** A compare-and-swap loop that gave up: `{ operation }`. */
export const casExhausted = channel('calico.ipam.cas-exhausted');
/** An etcd call that failed: `{ kind: 'unavailable' | 'request' }`. */
export const etcdErrors = channel('calico.etcd.error');
