/**
 * Puts the plugin executables into a CNI plugins directory. Their first line is rewritten to the
 * node that runs the installer: a runtime's PATH may hold no node (Mesos passes its own), and an
 * absolute interpreter saves `/usr/bin/env`'s exec on every command (about 3 ms here). Its one
 * flag (a first line takes one) keeps V8 from starting its worker threads, which a process that
 * lives for a forwarded command never uses (about 1.3 ms of CPU per command, measured).
 */
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PLUGINS = ['calico', 'calico-ipam'] as const;

export function installPluginFiles(sourceDir: string, targetDir: string, node = process.execPath): string[] {
  return PLUGINS.map((plugin) => {
    const text = readFileSync(join(sourceDir, plugin), 'utf8').replace(/^#!.*\n/, `#!${node} --v8-pool-size=0\n`);
    // Write then rename: a runtime calling the plugin meanwhile sees the old file or the new, never half.
    const temp = join(targetDir, `.${plugin}.new`);
    writeFileSync(temp, text);
    chmodSync(temp, 0o755);
    renameSync(temp, join(targetDir, plugin));
    return join(targetDir, plugin);
  });
}
