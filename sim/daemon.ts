/** The node daemon started inside a simulated host, on a socket of its own, stopped by pid. */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Netns } from './netns';

/** How long a daemon may take to listen on its sockets. */
const START_TIMEOUT_MS = 15_000;

export class NodeDaemon {
  private exited: Promise<void>;
  stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
    logFile: string | undefined,
  ) {
    child.stderr!.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-20000);
      if (logFile) appendFileSync(logFile, d);
    });
    const killOnExit = () => {
      child.kill('SIGKILL');
      killBird(join(dir, 'bird'));
    };
    process.once('exit', killOnExit);
    this.exited = new Promise((done) => child.once('exit', () => {
      process.off('exit', killOnExit);
      done();
    }));
  }

  get cniSocket(): string {
    return join(this.dir, 'cni.sock');
  }

  /** Where the daemon records the workloads' MTU (CNI configurations name it as mtu_file). */
  get mtuFile(): string {
    return join(this.dir, 'mtu');
  }

  /** Docker's IpamDriver socket of this daemon (driver name calico-ipam, in its own plugin dir). */
  get ipamSocket(): string {
    return join(this.dir, 'plugins', 'calico-ipam.sock');
  }

  /**
   * `dir`: where its sockets and files go; a daemon started again in the same one keeps its socket
   * paths. `logFile`: where its whole log is appended too (stderr keeps only the end).
   */
  static async start(host: Netns, args: string[] = [], dir = mkdtempSync(join(tmpdir(), 'calico-daemon-')), logFile?: string): Promise<NodeDaemon> {
    const child = spawn('nsenter', [`--net=${host.path}`, resolve('dist/bin/calico-libnetwork'), '--cni-socket', join(dir, 'cni.sock'), '--plugin-dir', join(dir, 'plugins'), '--bird-dir', join(dir, 'bird'), '--mtu-file', join(dir, 'mtu'), ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const daemon = new NodeDaemon(child, dir, logFile);
    // Ready once it listens on every socket: the CNI one and both Docker drivers'.
    const listening = () => existsSync(daemon.cniSocket) && existsSync(join(dir, 'plugins')) && readdirSync(join(dir, 'plugins')).length >= 2;
    // By the clock, generously: under the suite's load a start has taken over 5 s.
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!listening() && Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`the daemon exited: ${daemon.stderr}`);
      await sleep(25);
    }
    if (!listening()) throw new Error(`the daemon did not listen within ${START_TIMEOUT_MS / 1000} s: ${daemon.stderr}`);
    return daemon;
  }

  get pid(): number {
    return this.child.pid!;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
  }

  async destroy(): Promise<void> {
    await this.stop('SIGKILL');
    killBird(join(this.dir, 'bird'));
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The pid of the BIRD this daemon started (--backend bird), while it runs. */
  birdPid(): number | undefined {
    return runningBird(join(this.dir, 'bird'));
  }
}

/** The BIRD whose pid file is in `dir`, if that pid is still a BIRD (not a pid reused since). */
export function runningBird(dir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dir, 'bird.pid'), 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 && readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!.endsWith('bird') ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** A daemon killed outright leaves the BIRD it started running: it is stopped by its pid. */
export function killBird(dir: string): void {
  const pid = runningBird(dir);
  if (pid !== undefined) process.kill(pid, 'SIGKILL');
}
