import { CalicoError } from '../errors';

/** An `ip` (or `nsenter`) command failed; carries what it printed. */
export class DataplaneCommandError extends CalicoError {
  readonly code = 'DATAPLANE_COMMAND_FAILED';

  constructor(
    readonly what: string,
    readonly stderr: string,
  ) {
    super(`failed to ${what}: ${stderr.trim() || 'no output'}`);
  }
}

/** The container already has an interface of that name (another container's, or a repeat). */
export class InterfaceExistsError extends CalicoError {
  readonly code = 'DATAPLANE_INTERFACE_EXISTS';

  constructor(
    readonly ifname: string,
    detail = 'in the container\'s network namespace',
  ) {
    super(`interface "${ifname}" already exists ${detail}`);
  }
}

/** A host link of the name a workload needs belongs to another workload (its alias says so). */
export class HostInterfaceOwnedError extends CalicoError {
  readonly code = 'DATAPLANE_INTERFACE_OWNED';

  constructor(readonly ifname: string) {
    super(`host interface "${ifname}" belongs to another workload; it was left alone`);
  }
}

/** The network namespace path does not exist (the container is gone or was never there). */
export class NetnsNotFoundError extends CalicoError {
  readonly code = 'DATAPLANE_NETNS_NOT_FOUND';

  constructor(readonly path: string) {
    super(`network namespace "${path}" does not exist`);
  }
}

/** The kernel cannot make a tunnel device a pool's encapsulation needs (no ipip or vxlan support). */
export class TunnelUnsupportedError extends CalicoError {
  readonly code = 'DATAPLANE_TUNNEL_UNSUPPORTED';

  constructor(readonly kind: 'ipip' | 'vxlan', detail: string) {
    super(`this kernel cannot carry ${kind === 'ipip' ? 'IPIP' : 'VXLAN'} traffic: ${detail}`);
  }
}
