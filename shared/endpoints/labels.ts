/**
 * Workload labels as Calico accepts them (Kubernetes label syntax). Orchestrator labels (Mesos
 * network_info labels, Docker container labels) are free text, so they are sanitised the way
 * Calico's Mesos integration does: "/" becomes ".", other invalid characters "-", the ends trimmed
 * to alphanumerics, and values cut to 63 characters. A key longer than 63 is cut with a hash of the
 * whole key in its last characters, so that two long keys never become one.
 */
import { createHash } from 'node:crypto';

const MAX_VALUE = 63;
/**
 * Keys only the product sets: network membership (profile.ts) and Calico's own. A user label with
 * one of them is dropped, so that no label can make a workload a member of a network it is not on.
 */
export const NETWORK_LABEL_PREFIX = 'pcn.';
const RESERVED_PREFIXES = [NETWORK_LABEL_PREFIX, 'projectcalico.org'];
const MAX_NAME = 63;

function clean(text: string, allowed: RegExp, max: number): string {
  return text
    .replace(/\//g, '.')
    .replace(allowed, '-')
    .slice(0, max)
    .replace(/^[^A-Za-z0-9]+/, '')
    .replace(/[^A-Za-z0-9]+$/, '');
}

/** Hex digits of a long key's hash kept at the end of its shortened form. */
const KEY_HASH_DIGITS = 10;

export function sanitiseLabelKey(key: string): string {
  const whole = clean(key, /[^A-Za-z0-9_.-]/g, Infinity);
  if (whole.length <= MAX_NAME) return whole;
  const hash = createHash('sha256').update(key).digest('hex').slice(0, KEY_HASH_DIGITS);
  return `${clean(whole, /[^A-Za-z0-9_.-]/g, MAX_NAME - KEY_HASH_DIGITS - 1)}-${hash}`;
}

export function sanitiseLabelValue(value: string): string {
  return clean(value, /[^A-Za-z0-9_.-]/g, MAX_VALUE);
}

function isReservedLabelKey(key: string): boolean {
  return RESERVED_PREFIXES.some((prefix) => key.startsWith(prefix));
}

/**
 * Sanitises every pair; pairs whose key sanitises to nothing are dropped (listed in `dropped`), and
 * so are those with a reserved key (listed in `refused`), for the caller to log.
 */
export function sanitiseLabels(labels: Iterable<readonly [string, string]>): { labels: Record<string, string>; refused: string[]; dropped: string[] } {
  const out: Record<string, string> = {};
  const refused: string[] = [];
  const dropped: string[] = [];
  for (const [key, value] of labels) {
    const k = sanitiseLabelKey(key);
    if (!k) dropped.push(key);
    else if (isReservedLabelKey(k)) refused.push(k);
    else out[k] = sanitiseLabelValue(value);
  }
  return { labels: out, refused, dropped };
}
