/**
 * The only code that runs `ip`: in this network namespace, or inside another through
 * `nsenter --net=PATH` (a Mesos netns is a bind mount anywhere, not only under /run/netns).
 * Several steps go in one `ip -batch` process: each spawn costs milliseconds on the CNI hot path.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { access, readFile, writeFile } from 'node:fs/promises';
import { DataplaneCommandError, NetnsNotFoundError } from './errors';

export interface IpRun {
  readonly stdout: string;
  readonly stderr: string;
}

const COMMAND_TIMEOUT_MS = 10_000;

/** Runs `ip [-j] [-4|-6] -batch -` with the given lines, in `netns` if given. */
export function ipBatch(
  what: string,
  lines: readonly string[],
  options: { netns?: string; json?: boolean; family?: 4 | 6; force?: boolean } = {},
): Promise<IpRun> {
  const ipArgs = [...(options.json ? ['-j'] : []), ...(options.family ? [`-${options.family}`] : []), ...(options.force ? ['-force'] : []), '-batch', '-'];
  const [file, args] = options.netns ? ['nsenter', [`--net=${options.netns}`, 'ip', ...ipArgs]] : ['ip', ipArgs];
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { timeout: COMMAND_TIMEOUT_MS, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new DataplaneCommandError(what, stderr || err.message));
      else resolve({ stdout, stderr });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(lines.join('\n') + '\n');
  });
}

/** Parses the JSON documents `ip -j -batch` prints, one per command, one per line. */
export function parseJsonLines<T>(stdout: string): T[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim().startsWith('['))
    .map((line) => JSON.parse(line) as T);
}

/** The links of this process's network namespace, without spawning anything. */
export async function localLinks(): Promise<Set<string>> {
  const text = await readFile('/proc/self/net/dev', 'utf8');
  const names = text.split('\n').slice(2).map((line) => line.split(':')[0]!.trim()).filter(Boolean);
  return new Set(names);
}

/** Writes a sysctl of this network namespace (a file, so no process is spawned). */
export async function setSysctl(path: string, value: string): Promise<void> {
  try {
    await writeFile(`/proc/sys/${path}`, value);
  } catch (err) {
    throw new DataplaneCommandError(`set sysctl ${path.replaceAll('/', '.')}=${value}`, (err as Error).message);
  }
}

export async function netnsExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export async function requireNetns(path: string): Promise<void> {
  if (!(await netnsExists(path))) throw new NetnsNotFoundError(path);
}

/**
 * A long-lived `ip -force -batch -` in this process's namespace, for the commands a long-lived
 * process (the node daemon) runs on every workload: no process is started per command (about 6 ms
 * each here). `ip` runs batch lines as they arrive and reports a failed line on stderr as
 * "Command failed -:N"; each run ends with a line that always fails, so its report on the same
 * stream says the run is over. Only commands that print nothing on success go through it.
 */
export class IpSession {
  private child: ChildProcess | undefined;
  private stderr = '';
  private lineNo = 0;
  private current: { end: number; first: number; what: string; resolve: () => void; reject: (err: unknown) => void; timer: NodeJS.Timeout } | undefined;
  private readonly waiting: { what: string; lines: readonly string[]; resolve: () => void; reject: (err: unknown) => void }[] = [];

  /** Runs the lines in order; fails (after running them all) naming what failed. */
  run(what: string, lines: readonly string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ what, lines, resolve, reject });
      if (!this.current) this.next();
    });
  }

  close(): void {
    this.child?.stdin?.end();
    this.child = undefined;
  }

  private next(): void {
    const job = this.waiting.shift();
    if (!job) return;
    const child = this.child ?? this.spawn();
    const first = this.lineNo + 1;
    this.lineNo += job.lines.length + 1;
    const timer = setTimeout(() => this.fail(new DataplaneCommandError(job.what, `ip gave no answer within ${COMMAND_TIMEOUT_MS} ms`)), COMMAND_TIMEOUT_MS);
    this.current = { end: this.lineNo, first, what: job.what, resolve: job.resolve, reject: job.reject, timer };
    // The last line names a device that cannot exist ("/" is not allowed in names): it always fails.
    child.stdin!.write(`${job.lines.join('\n')}\nlink show dev end/${this.lineNo}\n`);
  }

  private spawn(): ChildProcess {
    const child = spawn('ip', ['-force', '-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    this.child = child;
    // An idle session never keeps its process alive; a run in progress does, by its timer.
    child.unref();
    (child.stdin as unknown as { unref(): void }).unref();
    (child.stderr as unknown as { unref(): void }).unref();
    this.lineNo = 0;
    this.stderr = '';
    child.stdin!.on('error', () => undefined);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
      this.settle();
    });
    child.on('exit', () => {
      // A process replaced already (after a timeout) says nothing about the current run.
      if (this.child !== child) return;
      this.child = undefined;
      this.fail(new DataplaneCommandError(this.current?.what ?? 'run ip', 'the ip process exited'));
    });
    return child;
  }

  /** Finishes the current run once the report of its last line has arrived. */
  private settle(): void {
    const run = this.current;
    if (!run) return;
    const marker = `Command failed -:${run.end}\n`;
    const at = this.stderr.indexOf(marker);
    if (at < 0) return;
    const report = this.stderr.slice(0, at);
    this.stderr = this.stderr.slice(at + marker.length);
    clearTimeout(run.timer);
    this.current = undefined;
    // What failed: the messages before each "Command failed -:N" of this run's own lines.
    const failures = report.split(/Command failed -:\d+\n/).map((m) => m.trim()).filter((m) => m !== '' && !m.includes(`end/${run.end}`));
    if (failures.length > 0) run.reject(new DataplaneCommandError(run.what, failures.join('\n')));
    else run.resolve();
    this.next();
  }

  /** The process is gone or stuck: the current run fails, the next starts a new process. */
  private fail(err: DataplaneCommandError): void {
    const run = this.current;
    if (run) {
      clearTimeout(run.timer);
      this.current = undefined;
      run.reject(err);
    }
    const child = this.child;
    this.child = undefined;
    child?.kill('SIGKILL');
    this.next();
  }
}

/** The session of this process's own (host) namespace, started on first use. */
let hostSession: IpSession | undefined;

/** Runs commands in this process's namespace without a process of their own (see IpSession). */
export function hostIp(what: string, lines: readonly string[]): Promise<void> {
  hostSession ??= new IpSession();
  return hostSession.run(what, lines);
}
