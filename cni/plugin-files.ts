/**
 * Puts the plugin executables into a CNI plugins directory (and calicoctl where it is asked for).
 * Their first line is rewritten to the node that runs the installer: a runtime's PATH may hold no node (Mesos passes its own), and an
 * absolute interpreter saves `/usr/bin/env`'s exec on every command (about 3 ms here). Its one
 * flag (a first line takes one) keeps V8 from starting its worker threads, which a process that
 * lives for a forwarded command never uses (about 1.3 ms of CPU per command, measured).
 */
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

export const PLUGINS = ['calico', 'calico-ipam'] as const;

export function installPluginFiles(sourceDir: string, targetDir: string, node = process.execPath): string[] {
  return PLUGINS.map((plugin) => installExecutable(join(sourceDir, plugin), targetDir, node, ' --v8-pool-size=0'));
}

/** One of our executables copied into `targetDir`, run by `node` (with `flags`); returns where it went. */
export function installExecutable(source: string, targetDir: string, node = process.execPath, flags = ''): string {
  const name = basename(source);
  const text = readFileSync(source, 'utf8').replace(/^#!.*\n/, `#!${node}${flags}\n`);
  // Write then rename: a runtime calling it meanwhile sees the old file or the new, never half.
  const temp = join(targetDir, `.${name}.new`);
  writeFileSync(temp, text);
  chmodSync(temp, 0o755);
  renameSync(temp, join(targetDir, name));
  return join(targetDir, name);
}
