/** CNI spec versions this plugin speaks, and their ordering. */
import { CniCode, CniError } from './errors';

export const SUPPORTED_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export function parseVersion(value: unknown): CniVersion {
  // The spec: a config without cniVersion is 0.1.0.
  if (value === undefined || value === null || value === '') return '0.1.0';
  if (typeof value === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(value)) return value as CniVersion;
  throw new CniError(CniCode.IncompatibleVersion, `incompatible CNI version ${JSON.stringify(value)}: this plugin supports ${SUPPORTED_VERSIONS.join(', ')}`);
}

/** Whether `version` is at least `floor`. */
export function atLeast(version: CniVersion, floor: CniVersion): boolean {
  return SUPPORTED_VERSIONS.indexOf(version) >= SUPPORTED_VERSIONS.indexOf(floor);
}

/**
 * VERSION's answer, in the version the caller's config names (the latest when it names none or
 * is not JSON). Needs nothing else of the plugin: the executables answer it before loading more.
 */
export function versionAnswer(stdin: string): string {
  return JSON.stringify({ cniVersion: answerVersion(stdin), supportedVersions: [...SUPPORTED_VERSIONS] });
}

/**
 * The version to answer in, for VERSION and for an error found before the config is parsed (the
 * environment's): the one the config on stdin names, else the latest (it names none we speak, or
 * is no JSON object).
 */
export function answerVersion(stdin: string): CniVersion {
  try {
    const raw = JSON.parse(stdin) as { cniVersion?: unknown } | null;
    if (raw?.cniVersion !== undefined) return parseVersion(raw.cniVersion);
  } catch {
    // not JSON, or a version we do not speak: the latest
  }
  return LATEST_VERSION;
}
