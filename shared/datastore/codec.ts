/** Decoding what etcd holds: JSON that is not what we expect is an error naming the key. */
import { MalformedDataError } from './errors';
import { parseBoundedJson } from '../json';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function parseJsonObject(key: string, text: string): JsonObject {
  let value: unknown;
  try {
    value = parseBoundedJson(text, key);
  } catch (err) {
    throw new MalformedDataError(key, `not JSON (${(err as Error).message})`);
  }
  if (!isObject(value)) throw new MalformedDataError(key, 'expected a JSON object');
  return value;
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Field readers that name the key and the field when the shape is wrong. */
export class FieldReader {
  constructor(
    readonly key: string,
    private readonly object: JsonObject,
    private readonly path = '',
  ) {}

  private fail(field: string, expected: string): never {
    throw new MalformedDataError(this.key, `field "${this.path}${field}" must be ${expected}`);
  }

  string(field: string): string {
    const v = this.object[field];
    return typeof v === 'string' ? v : this.fail(field, 'a string');
  }

  optionalString(field: string): string | undefined {
    const v = this.object[field];
    if (v === undefined || v === null) return undefined;
    return typeof v === 'string' ? v : this.fail(field, 'a string');
  }

  boolean(field: string, fallback: boolean): boolean {
    const v = this.object[field];
    if (v === undefined || v === null) return fallback;
    return typeof v === 'boolean' ? v : this.fail(field, 'true or false');
  }

  integer(field: string, fallback: number): number {
    const v = this.object[field];
    if (v === undefined || v === null) return fallback;
    return Number.isSafeInteger(v) ? (v as number) : this.fail(field, 'a whole number');
  }

  child(field: string): FieldReader {
    const v = this.object[field];
    return isObject(v) ? new FieldReader(this.key, v, `${this.path}${field}.`) : this.fail(field, 'an object');
  }

  optionalObject(field: string): JsonObject | undefined {
    const v = this.object[field];
    if (v === undefined || v === null) return undefined;
    return isObject(v) ? v : this.fail(field, 'an object');
  }

  array(field: string): Json[] {
    const v = this.object[field];
    return Array.isArray(v) ? v : this.fail(field, 'an array');
  }

  /** A map of string to string (labels, annotations, secondary attributes). */
  stringMap(field: string): Record<string, string> | undefined {
    const v = this.optionalObject(field);
    if (v === undefined) return undefined;
    for (const [k, value] of Object.entries(v)) if (typeof value !== 'string') this.fail(`${field}.${k}`, 'a string');
    return v as Record<string, string>;
  }

  raw(): JsonObject {
    return this.object;
  }
}
