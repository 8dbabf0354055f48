import { CalicoError } from '../errors';

/** etcd could not be reached or did not answer within the deadline; names the endpoints. */
export class DatastoreUnavailableError extends CalicoError {
  readonly code = 'DATASTORE_UNAVAILABLE';

  constructor(
    readonly endpoints: readonly string[],
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`etcd at ${endpoints.join(',')} is unavailable: ${detail}`, options);
  }
}

/** etcd answered with an error we do not retry (request too large, ...). */
export class DatastoreRequestError extends CalicoError {
  readonly code = 'DATASTORE_REQUEST_FAILED';
}

/** etcd refused who we are (user and password) or what we asked (outside the role's keys); names the endpoints. */
export class DatastoreAccessError extends CalicoError {
  readonly code = 'DATASTORE_ACCESS_DENIED';

  constructor(
    readonly endpoints: readonly string[],
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`etcd at ${endpoints.join(',')} refused access: ${detail} (check etcd_username/etcd_password, and that the user's role may read and write the prefix)`, options);
  }
}

/** A value stored in etcd that is not what our layout says; names the key, never crashes us. */
export class MalformedDataError extends CalicoError {
  readonly code = 'DATASTORE_MALFORMED';

  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(`malformed data at etcd key ${key}: ${reason}`);
  }
}

/** A compare-and-swap write lost: someone changed the key since it was read. */
export class ConflictError extends CalicoError {
  readonly code = 'DATASTORE_CONFLICT';

  constructor(readonly key: string) {
    super(`${key} was modified concurrently`);
  }
}

export class AlreadyExistsError extends CalicoError {
  readonly code = 'DATASTORE_ALREADY_EXISTS';

  constructor(readonly key: string) {
    super(`${key} already exists`);
  }
}

export class NotFoundError extends CalicoError {
  readonly code = 'DATASTORE_NOT_FOUND';

  constructor(readonly key: string) {
    super(`${key} does not exist`);
  }
}
