/** Runs a CNI plugin executable inside a host namespace with exactly the given environment. */
import { spawn } from 'node:child_process';
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
    // spawn, not execFile: execFile does not pass `detached` on, and the kill needs a group of its own.
    const child = spawn('nsenter', [`--net=${host.path}`, plugin, ...args], { env, detached: killAfterMs !== undefined });
    const [stdout, stderr] = [[] as Buffer[], [] as Buffer[]];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    let killed = false;
    let spawnError = '';
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    const killer = killAfterMs === undefined ? undefined : setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
        killed = true;
      } catch {
        // Done already.
      }
    }, killAfterMs);
    child.on('error', (err) => (spawnError = err.message));
    child.on('close', (exitCode) => {
      clearTimeout(timer);
      clearTimeout(killer);
      const out = Buffer.concat(stdout).toString('utf8');
      let json: Record<string, any> | undefined;
      try {
        json = out.trim() ? JSON.parse(out) : undefined;
      } catch {
        json = undefined;
      }
      done({ code: spawnError ? 1 : (exitCode ?? 1), stdout: out, stderr: Buffer.concat(stderr).toString('utf8') + spawnError, json, ...(killed ? { killed } : {}) });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
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
