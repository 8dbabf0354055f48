/**
 * The root of every error the product raises on purpose. `code` is stable (callers and tests
 * match on it); the CNI error code and the Docker `Err` text are derived from these classes
 * at the entrypoints, in one place each.
 */
export abstract class CalicoError extends Error {
  abstract readonly code: string;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A value supplied by the user (config, env, request) that we refuse; names the field. */
export class InvalidInputError extends CalicoError {
  readonly code = 'INVALID_INPUT';

  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`invalid ${field}: ${reason}`);
  }
}

/** The message of any thrown value, for wrapping causes into our own errors. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
