/**
 * BIRD 2, run and talked to: the only code that starts `bird` or runs `birdc`.
 * - A configuration is checked (`bird -p`) before it is put in place; BIRD then rereads it
 *   (`birdc configure`), which keeps established sessions when only filters or routes change.
 * - The process is supervised: started in the foreground with its log on stderr (passed to ours),
 *   started again after a crash (with graceful-restart recovery, `-R`, so kernel routes stay until
 *   its peers have sent theirs again), stopped for a graceful restart when the daemon stops, so
 *   that peers keep this host's routes while it is away. A BIRD already answering on the control
 *   socket (left by a daemon that was killed) is taken over, not started twice.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { CalicoError } from '../errors';
import { hasBirdRoutes } from './routes';

const BIRD = '/usr/sbin/bird';
const BIRDC = '/usr/sbin/birdc';
const COMMAND_TIMEOUT_MS = 10_000;
const RESTART_DELAY_MS = { first: 500, max: 30_000 };

export class BirdError extends CalicoError {
  readonly code = 'BIRD_FAILED';
}

export interface BirdPaths {
  readonly config: string;
  readonly socket: string;
  /** Where BIRD writes its pid: what stops a BIRD whose daemon was killed. */
  readonly pidFile: string;
}

function run(file: string, args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: COMMAND_TIMEOUT_MS }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}`.trim() });
    });
  });
}

/** Runs one control command; the lines BIRD answered (its greeting left out). */
export async function birdc(socket: string, command: string): Promise<string[]> {
  const { code, output } = await run(BIRDC, ['-s', socket, command]);
  if (code !== 0 || /Unable to connect/.test(output)) throw new BirdError(`birdc ${command}: ${output || `exit ${code}`}`);
  return output.split('\n').filter((line) => !/^BIRD [\d.]+ ready\.$/.test(line));
}

/** Why BIRD cannot run here (not installed), or undefined when it can. */
export function birdMissing(): string | undefined {
  return existsSync(BIRD) ? undefined : `BIRD 2 is not installed (no ${BIRD}): install Debian's bird2 for --backend bird`;
}

/** Checks `text` with `bird -p`, then puts it at `paths.config`; a refused one leaves the old in place. */
export async function installBirdConfig(paths: BirdPaths, text: string): Promise<void> {
  const missing = birdMissing();
  if (missing) throw new BirdError(missing);
  const candidate = `${paths.config}.new`;
  await writeFile(candidate, text);
  const { code, output } = await run(BIRD, ['-p', '-c', candidate]);
  if (code !== 0) throw new BirdError(`BIRD refused the configuration: ${output}`);
  await rename(candidate, paths.config);
}

export class BirdProcess {
  private child: ChildProcess | undefined;
  private stopping = false;
  private restartDelay = RESTART_DELAY_MS.first;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly paths: BirdPaths,
    private readonly log: { line(text: string): void; exited(detail: string): void },
  ) {}

  /** Whether a BIRD answers on the control socket (ours, or one left running). */
  async answering(): Promise<boolean> {
    return birdc(this.paths.socket, 'show status').then(() => true, () => false);
  }

  /**
   * Makes sure a BIRD runs on the installed configuration: the one this process started, or one
   * that answers on the socket (taken over); else starts one, with graceful-restart recovery
   * when a BIRD before it left routes in the kernel. Says whether it had to start one (which then
   * reads the configuration itself).
   */
  async ensureRunning(): Promise<boolean> {
    if (this.stopping || (this.child && this.child.exitCode === null) || this.timer) return false;
    if (await this.answering()) return false;
    this.spawn(await hasBirdRoutes());
    return true;
  }

  async configure(): Promise<void> {
    const answer = (await birdc(this.paths.socket, 'configure')).join(' ');
    if (!/Reconfigur|Reconfiguration in progress|already in progress/i.test(answer)) throw new BirdError(`BIRD did not take the configuration: ${answer}`);
  }

  /**
   * With graceful-restart recovery (-R) after a crash or the daemon's own restart: the kernel
   * routes the last BIRD left stay until its peers have sent theirs again. (A first start goes
   * without: recovery waits for every peer, and there is nothing to keep.)
   */
  private spawn(recover: boolean): void {
    const child = spawn(BIRD, ['-f', ...(recover ? ['-R'] : []), '-c', this.paths.config, '-s', this.paths.socket, '-P', this.paths.pidFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let pending = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (line.trim()) this.log.line(line);
    });
    const started = Date.now();
    child.once('exit', (code, signal) => {
      this.child = undefined;
      if (this.stopping) return;
      this.log.exited(`exit ${code ?? signal}`);
      // A BIRD that ran a while is restarted soon; one that keeps failing, less and less often.
      this.restartDelay = Date.now() - started > 60_000 ? RESTART_DELAY_MS.first : Math.min(this.restartDelay * 2, RESTART_DELAY_MS.max);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (!this.stopping) this.spawn(true);
      }, this.restartDelay);
    });
    child.once('error', (err) => this.log.exited(err.message));
  }

  /** The pid of the BIRD this process started, if it runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Stops BIRD for a graceful restart (peers keep its routes), and waits for it to go. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    const child = this.child;
    await birdc(this.paths.socket, 'graceful restart').catch(() => child?.kill('SIGTERM'));
    if (child && child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((done) => {
        const force = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(force);
          done();
        });
      });
    }
  }
}

export interface BgpSession {
  readonly protocol: string;
  readonly state: string;
  readonly since: string;
  readonly info: string;
}

/** The BGP protocols of `birdc show protocols`: name, state, since when, and BIRD's detail (Established, Active...). */
export async function bgpSessions(socket: string): Promise<BgpSession[]> {
  const sessions: BgpSession[] = [];
  for (const line of await birdc(socket, 'show protocols')) {
    const match = /^(\S+)\s+BGP\s+\S+\s+(\S+)\s+(\S+ \S+)\s*(.*)$/.exec(line);
    if (match) sessions.push({ protocol: match[1]!, state: match[2]!, since: match[3]!, info: match[4]!.trim() });
  }
  return sessions;
}
