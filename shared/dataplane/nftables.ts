/**
 * The only code that runs `nft`: a script on stdin, which nft applies as one transaction (all of
 * it or none of it), in this network namespace or inside another through `nsenter --net=PATH`.
 */
import { accessSync, constants } from 'node:fs';
import { runCommand, type CommandFailure } from './command-runner';
import { DataplaneCommandError } from './errors';

const NFT_TIMEOUT_MS = 30_000;

/**
 * Debian's nft by its full path: under npm, PATH starts with node_modules/.bin, where a package's
 * own `nft` (Vercel's node-file-trace) may sit.
 */
export const NFT = ['/usr/sbin/nft', '/sbin/nft'].find((path) => {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}) ?? 'nft';

function runNft(what: string, args: readonly string[], input: string, netns?: string): Promise<string> {
  const [file, argv] = netns ? ['nsenter', [`--net=${netns}`, NFT, ...args]] : [NFT, [...args]];
  return runCommand(file, argv, input, { timeoutMs: NFT_TIMEOUT_MS, maxBuffer: 256 << 20 }).then(
    ({ stdout }) => stdout,
    (err: CommandFailure) => {
      throw new DataplaneCommandError(what, (err.stderr || err.message).trim().split('\n').slice(0, 6).join('\n'));
    },
  );
}

/** Applies an nft script in one transaction. */
export async function applyNftScript(what: string, script: string, options: { netns?: string } = {}): Promise<void> {
  if (script === '') return;
  await runNft(what, ['-f', '-'], script, options.netns);
}

/** The table as nft prints it, or undefined when it does not exist. */
export async function listNftTable(table: string, options: { netns?: string } = {}): Promise<string | undefined> {
  try {
    return await runNft(`list table ${table}`, ['list', 'table', ...table.split(' ')], '', options.netns);
  } catch (err) {
    if (/No such file or directory/.test((err as Error).message)) return undefined;
    throw err;
  }
}

/** Removes the table, if it exists (one transaction: create-if-absent, then delete). */
export async function deleteNftTable(table: string, options: { netns?: string } = {}): Promise<void> {
  await runNft(`delete table ${table}`, ['-f', '-'], `table ${table}\ndelete table ${table}\n`, options.netns);
}
