import { CalicoError } from '../errors';

/** The requested address is already allocated (to `owner`, when known). */
export class AddressInUseError extends CalicoError {
  readonly code = 'IPAM_ADDRESS_IN_USE';

  constructor(
    readonly address: string,
    readonly owner: string | null,
  ) {
    super(`address ${address} is already in use${owner ? ` (handle "${owner}")` : ''}`);
  }
}

/** A pool's network or broadcast address: never handed out. */
export class AddressReservedError extends CalicoError {
  readonly code = 'IPAM_ADDRESS_RESERVED';

  constructor(readonly address: string) {
    super(`address ${address} is its pool's network or broadcast address, which is never handed out`);
  }
}

/** An address that lies in no (enabled, permitted) IP pool. */
export class AddressOutsidePoolsError extends CalicoError {
  readonly code = 'IPAM_ADDRESS_OUTSIDE_POOLS';

  constructor(
    readonly address: string,
    detail: string,
  ) {
    super(`address ${address} is not in any ${detail}`);
  }
}

/** No pool of the wanted IP version is usable (none exist, all disabled, or none of those asked for). */
export class NoUsablePoolError extends CalicoError {
  readonly code = 'IPAM_NO_USABLE_POOL';
}

/** Every permitted pool is full (or this host may claim no more blocks in them); names the pools. */
export class PoolsExhaustedError extends CalicoError {
  readonly code = 'IPAM_POOLS_EXHAUSTED';

  constructor(
    readonly pools: readonly string[],
    reason: string,
  ) {
    super(`no free address in pool(s) ${pools.join(', ')}: ${reason}`);
  }
}

/** A compare-and-swap loop lost every round; the operation did not happen. */
export class ExcessiveConflictsError extends CalicoError {
  readonly code = 'IPAM_EXCESSIVE_CONFLICTS';

  constructor(operation: string, attempts: number) {
    super(`${operation} gave up after ${attempts} conflicting concurrent updates; nothing was changed, try again`);
  }
}

/** An IP pool definition we refuse (bad CIDR, block size, overlap). */
export class InvalidPoolError extends CalicoError {
  readonly code = 'IPAM_INVALID_POOL';
}
