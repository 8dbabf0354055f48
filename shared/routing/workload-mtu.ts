/**
 * The MTU workloads' veths get when their configuration names none, as calico-node and Calico's
 * CNI plugin share it: the node daemon writes it to a file (`/var/lib/calico/mtu`) from the link
 * its tunnels leave by, less the largest encapsulation in use (VXLAN 50 bytes, IPIP 20); the
 * plugins read it at each ADD. Without the file (no daemon yet), 1500.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { validateMtu } from '../dataplane/names';

export const DEFAULT_MTU_FILE = '/var/lib/calico/mtu';
export const DEFAULT_WORKLOAD_MTU = 1500;

/** The MTU in `path`, or the default when there is none or it is not a sane MTU. */
export function workloadMtu(path: string = DEFAULT_MTU_FILE): number {
  try {
    return validateMtu(Number(readFileSync(path, 'utf8').trim()));
  } catch {
    return DEFAULT_WORKLOAD_MTU;
  }
}

/** Writes it whole (a reader never sees half a number). */
export function recordWorkloadMtu(path: string, mtu: number): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.new`, `${mtu}\n`);
  renameSync(`${path}.new`, path);
}
