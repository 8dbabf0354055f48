import { CalicoError } from '../shared/errors';

/** A request Docker (or the user behind it) made that we refuse; the message says what to do. */
export class DriverRequestError extends CalicoError {
  readonly code = 'DRIVER_BAD_REQUEST';
}

/** Reads a string field of a request body, naming it when it is missing or of the wrong type. */
export function field(body: Record<string, unknown>, name: string, required: true): string;
export function field(body: Record<string, unknown>, name: string, required?: false): string | undefined;
export function field(body: Record<string, unknown>, name: string, required = false): string | undefined {
  const value = body[name];
  if (value === undefined || value === null || value === '') {
    if (required) throw new DriverRequestError(`the request has no ${name}`);
    return undefined;
  }
  if (typeof value !== 'string') throw new DriverRequestError(`${name} must be a string, got ${JSON.stringify(value)}`);
  return value;
}

/** An optional map field (Options, Data): an object or nothing. */
export function mapField(body: Record<string, unknown>, name: string): Record<string, unknown> {
  const value = body[name];
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new DriverRequestError(`${name} must be an object`);
  return value as Record<string, unknown>;
}

/** An optional boolean field (V6): true, false or nothing, never a string that looks like one. */
export function flagField(body: Record<string, unknown>, name: string): boolean {
  const value = body[name];
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw new DriverRequestError(`${name} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}
