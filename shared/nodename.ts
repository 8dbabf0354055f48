import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** Where calico-node records this host's name; read when nothing names the host explicitly. */
export const NODENAME_FILE = '/var/lib/calico/nodename';

/** The host's name in the datastore when none is configured: the nodename file, else the host name. */
export function defaultNodename(file = NODENAME_FILE): string {
  try {
    const fromFile = readFileSync(file, 'utf8').trim();
    if (fromFile) return fromFile;
  } catch {
    // No file: calico-node has not written one on this host; the host name serves.
  }
  return hostname();
}
