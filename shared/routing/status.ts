/**
 * A host's routing status as its daemon publishes it (CalicoNodeStatus `<node>`, status field)
 * and `calicoctl node status` reads it.
 */
import type { PeerType } from './bgp-peers';
import type { RoutingBackend } from './desired-routes';

/** One BGP peer's session (Calico's CalicoNodeStatus peer fields). */
export interface PeerStatus {
  readonly peerIP: string;
  readonly type: PeerType;
  /** BIRD's protocol state (up, start...) and detail (Established, Active, Connect...). */
  readonly state: string;
  readonly since: string;
  readonly info: string;
}

export interface RoutingStatus {
  readonly backend: RoutingBackend;
  /** With the bird backend: whether BIRD answered on its control socket. */
  readonly birdRunning?: boolean;
  readonly peers: readonly PeerStatus[];
  /** When the daemon last wrote it. */
  readonly lastUpdated?: string;
}
