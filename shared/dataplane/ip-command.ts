/**
 * The only code that runs `ip` (and iproute2's `bridge`, for VXLAN forwarding entries): in this
 * network namespace, or inside another through `nsenter --net=PATH` (a Mesos netns is a bind
 * mount anywhere, not only under /run/netns). Several steps go in one `-batch` process: each
 * spawn costs milliseconds on the CNI hot path.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { startCommand, type CommandFailure, type StartedCommand } from './command-runner';
import { DataplaneCommandError, NetnsNotFoundError } from './errors';

export interface IpRun {
  readonly stdout: string;
  readonly stderr: string;
}

/** The most one ip run may take. */
export const COMMAND_TIMEOUT_MS = 10_000;

type BatchOptions = {
  netns?: string;
  json?: boolean;
  details?: boolean;
  family?: 4 | 6;
  force?: boolean;
  /** How long a run started ahead may wait for its lines, beyond its own time to run them. */
  waitMs?: number;
};

/** Runs `ip [-j] [-4|-6] -batch -` with the given lines, in `netns` if given. */
export function ipBatch(what: string, lines: readonly string[], options: BatchOptions = {}): Promise<IpRun> {
  return startIpBatch(what, options).run(lines);
}

/** An `ip -batch` started before its lines are known (see startCommand); `run` gives them, once. */
export interface StartedBatch {
  run(lines: readonly string[]): Promise<IpRun>;
}

export function startIpBatch(what: string, options: BatchOptions = {}): StartedBatch {
  return startBatch('ip', what, options);
}

/** Runs `bridge [-j] -batch -` with the given lines, in this network namespace. */
export function bridgeBatch(what: string, lines: readonly string[], options: { json?: boolean; force?: boolean } = {}): Promise<IpRun> {
  return startBatch('bridge', what, options).run(lines);
}

const MAX_OUTPUT = 16 << 20;

/**
 * Runs of `ip` in this namespace started before anyone asks for them, one per set of flags, kept
 * by the long-running daemon (keepSpareIpRuns): a command that wants one takes it at once, its
 * start-up (2-10 ms on a busy host) already behind it, and another starts in its place once no
 * run is in flight (below). Each is
 * a fresh process, used once: ip keeps a name's interface index for its whole life, so a spare
 * has run nothing before it is taken. One that has ended, or has too little time left, is not
 * taken but replaced.
 */
const SPARE_TIMEOUT_MS = 10 * 60_000;
let spares: Map<string, { readonly started: StartedCommand; readonly at: number }> | undefined;

export function keepSpareIpRuns(): void {
  spares ??= new Map();
}

/** Lets every spare go (their stdin closed, they exit having run nothing). */
export function dropSpareIpRuns(): void {
  for (const { started } of spares?.values() ?? []) started.finish('').catch(() => undefined);
  spares = undefined;
}

function takeSpare(key: string, waitMs: number): StartedCommand | undefined {
  const spare = spares?.get(key);
  spares?.delete(key);
  if (spare && !spare.started.ended && SPARE_TIMEOUT_MS - (Date.now() - spare.at) >= COMMAND_TIMEOUT_MS + waitMs) return spare.started;
  spare?.started.finish('').catch(() => undefined);
  return undefined;
}

/**
 * Runs started (or taken) and not yet exited. A spare is replaced only once none is left: a fork
 * in the helper while a run is in flight delays that run's answer by as long (measured: an alias
 * read then a cut took 8.5 ms with each spare replaced as it was taken, 3.3 ms so).
 */
let running = 0;
const wanted = new Map<string, readonly string[]>();

function replaceSpares(): void {
  for (const [key, args] of wanted) {
    if (spares && !spares.has(key)) spares.set(key, { started: startCommand('ip', args, { timeoutMs: SPARE_TIMEOUT_MS, maxBuffer: MAX_OUTPUT }), at: Date.now() });
  }
  wanted.clear();
}

function startBatch(program: 'ip' | 'bridge', what: string, options: BatchOptions): StartedBatch {
  const ipArgs = [...(options.json ? ['-j'] : []), ...(options.details ? ['-d'] : []), ...(options.family ? [`-${options.family}`] : []), ...(options.force ? ['-force'] : []), '-batch', '-'];
  const [file, args] = options.netns ? ['nsenter', [`--net=${options.netns}`, program, ...ipArgs]] : [program, ipArgs];
  const spareKey = spares && program === 'ip' && !options.netns ? args.join(' ') : undefined;
  const spare = spareKey === undefined ? undefined : takeSpare(spareKey, options.waitMs ?? 0);
  const started = spare ?? startCommand(file, args, { timeoutMs: COMMAND_TIMEOUT_MS + (options.waitMs ?? 0), maxBuffer: MAX_OUTPUT });
  if (spareKey !== undefined) wanted.set(spareKey, args);
  running++;
  void started.exited.then(() => {
    if (--running === 0) replaceSpares();
  });
  return {
    run: (lines) =>
      started.finish(lines.length === 0 ? '' : lines.join('\n') + '\n').catch((err: CommandFailure) => {
        throw new DataplaneCommandError(what, err.stderr || err.message);
      }),
  };
}

/** Parses the JSON documents `ip -j -batch` prints, one per command, one per line. */
export function parseJsonLines<T>(stdout: string): T[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim().startsWith('['))
    .map((line) => JSON.parse(line) as T);
}

// The /proc files below are made by the kernel as they are read or written, never waiting on a
// disk, so they are used synchronously: a round trip through the thread pool costs more than the
// call. (A netns path, given by the runtime, may be anywhere: it is looked at asynchronously.)

/** The links of this process's network namespace, without spawning anything. */
export async function localLinks(): Promise<Set<string>> {
  const text = readFileSync('/proc/self/net/dev', 'utf8');
  const names = text.split('\n').slice(2).map((line) => line.split(':')[0]!.trim()).filter(Boolean);
  return new Set(names);
}

/** Writes a sysctl of this network namespace (a file, so no process is spawned). */
export async function setSysctl(path: string, value: string): Promise<void> {
  try {
    writeFileSync(`/proc/sys/${path}`, value);
  } catch (err) {
    throw new DataplaneCommandError(`set sysctl ${path.replaceAll('/', '.')}=${value}`, (err as Error).message);
  }
}

/** Whether a sysctl of this network namespace exists (IPv6's do not where the kernel has IPv6 off). */
export function sysctlExists(path: string): boolean {
  return existsSync(`/proc/sys/${path}`);
}

/** nsfs's magic number (linux/magic.h): the file system of every namespace file. */
const NSFS_MAGIC = 0x6e736673;

/**
 * Whether a namespace is there: a file of nsfs, bound to the path or under /proc (a namespace of
 * another kind than network passes here and is refused by nsenter --net). A path whose namespace
 * was unmounted is not one, though the file stays (Docker removes its sandboxes' files only a
 * minute later).
 */
export async function netnsExists(path: string): Promise<boolean> {
  try {
    return (await statfs(path)).type === NSFS_MAGIC;
  } catch {
    return false;
  }
}

export async function requireNetns(path: string): Promise<void> {
  if (!(await netnsExists(path))) throw new NetnsNotFoundError(path);
}

