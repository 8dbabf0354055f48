/** Runs a CNI plugin executable inside a host namespace with exactly the given environment. */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, symlinkSync } from 'node:fs';
import { installPluginFiles } from '../cni/plugin-files';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Netns } from './netns';

export interface PluginRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout parsed, when it is JSON. */
  readonly json: Record<string, any> | undefined;
  /** It was still running when killAfterMs struck. */
  readonly killed?: boolean;
}

/**
 * `killAfterMs`: the plugin and whatever it started (its process group) are SIGKILLed that long
 * after the start, as a crash or an OOM kill would end them mid-command.
 */
export function runPlugin(host: Netns, plugin: string, env: Record<string, string>, stdin: string, timeoutMs = 60_000, args: readonly string[] = [], killAfterMs?: number): Promise<PluginRun> {
  return new Promise((done) => {
    let killer: NodeJS.Timeout | undefined;
    let killed = false;
    // A group of its own to kill (execFile passes `detached` on to spawn; its types omit it).
    const options = { env, timeout: timeoutMs, encoding: 'utf8' as const, detached: killAfterMs !== undefined };
    const child = execFile('nsenter', [`--net=${host.path}`, plugin, ...args], options, (err, stdout, stderr) => {
      clearTimeout(killer);
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      let json: Record<string, any> | undefined;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      done({ code, stdout, stderr, json, ...(killed ? { killed } : {}) });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(stdin);
    if (killAfterMs !== undefined) {
      killer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
          killed = true;
        } catch {
          // Done already.
        }
      }, killAfterMs);
    }
  });
}

/** What an operator does: a plugins dir holding our two executables (and Debian's host-local). */
export function installPlugins(): string {
  const built = resolve('dist/cni');
  if (!existsSync(join(built, 'calico'))) throw new Error('dist/cni/calico is missing: run `npm run build` first');
  const dir = mkdtempSync(join(tmpdir(), 'cni-plugins-'));
  installPluginFiles(built, dir);
  if (existsSync('/usr/lib/cni/host-local')) symlinkSync('/usr/lib/cni/host-local', join(dir, 'host-local'));
  return dir;
}

export const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
