/**
 * Puts the plugin executables into a CNI plugins directory (and calicoctl where it is asked for),
 * told which node runs them: the node that runs the installer, by its absolute path, since a
 * runtime's PATH may hold no node (Mesos passes its own) and an absolute path saves
 * `/usr/bin/env`'s exec. A node program's first line names it; a shell front (shared/front.sh)
 * keeps it in a variable, for the commands no daemon takes.
 */
import { chmodSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

export const PLUGINS = ['calico', 'calico-ipam'] as const;

/** The front's line that names the node, as the build leaves it. */
const FRONT_NODE_LINE = /^":" \/\/; front_node=node$/m;

export function installPluginFiles(sourceDir: string, targetDir: string, node = process.execPath): string[] {
  return PLUGINS.map((plugin) => installExecutable(join(sourceDir, plugin), targetDir, node));
}

/** One of our executables copied into `targetDir`, run by `node`; returns where it went. */
export function installExecutable(source: string, targetDir: string, node = process.execPath): string {
  const name = basename(source);
  const original = readFileSync(source, 'utf8');
  let text: string;
  if (original.startsWith('#!/bin/sh\n')) {
    if (node.includes("'") || !FRONT_NODE_LINE.test(original)) throw new Error(`cannot tell ${name} to run ${node}`);
    text = original.replace(FRONT_NODE_LINE, `":" //; front_node='${node}'`);
  } else {
    text = original.replace(/^#!.*\n/, `#!${node}\n`);
  }
  // Write then rename: a runtime calling it meanwhile sees the old file or the new, never half.
  const temp = join(targetDir, `.${name}.new`);
  writeFileSync(temp, text);
  chmodSync(temp, 0o755);
  renameSync(temp, join(targetDir, name));
  return join(targetDir, name);
}
