/**
 * CNI errors: the spec's codes, and the one place where our error classes become them.
 * Codes 100 and up are ours (documented in the README).
 */
import { CalicoError, InvalidInputError, messageOf } from '../shared/errors';

export const CniCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  NotAvailable: 50,
  /** Ours: something failed inside the plugin that fits no spec code. */
  Internal: 100,
  /** Ours: no address is free in the permitted pools. */
  NoAddressAvailable: 101,
  /** Ours: programming the container's or the host's network failed. */
  DataplaneFailure: 102,
  /** Ours: CHECK found the attachment not as the previous result says. */
  CheckFailed: 103,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details = '',
  ) {
    super(message);
    this.name = 'CniError';
  }
}

const CODE_OF: Record<string, number> = {
  INVALID_INPUT: CniCode.InvalidConfig,
  DATASTORE_UNAVAILABLE: CniCode.TryAgainLater,
  DATASTORE_CONFLICT: CniCode.TryAgainLater,
  DATASTORE_ACCESS_DENIED: CniCode.InvalidConfig,
  IPAM_EXCESSIVE_CONFLICTS: CniCode.TryAgainLater,
  LOCK_BUSY: CniCode.TryAgainLater,
  IPAM_ADDRESS_IN_USE: CniCode.InvalidConfig,
  IPAM_ADDRESS_OUTSIDE_POOLS: CniCode.InvalidConfig,
  IPAM_INVALID_POOL: CniCode.InvalidConfig,
  IPAM_NO_USABLE_POOL: CniCode.NoAddressAvailable,
  IPAM_POOLS_EXHAUSTED: CniCode.NoAddressAvailable,
  DATAPLANE_COMMAND_FAILED: CniCode.DataplaneFailure,
  DATAPLANE_INTERFACE_EXISTS: CniCode.DataplaneFailure,
  DATAPLANE_NETNS_NOT_FOUND: CniCode.InvalidEnvironment,
};

/** Any thrown value as a CniError: ours keep their code; our core's classes map by their stable code. */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof InvalidInputError && /^(CNI_|netns)/.test(err.field)) return new CniError(CniCode.InvalidEnvironment, err.message);
  if (err instanceof CalicoError) return new CniError(CODE_OF[err.code] ?? CniCode.Internal, err.message, err.code);
  return new CniError(CniCode.Internal, messageOf(err));
}
