/**
 * A server the simulation starts (etcd, its gRPC proxy): waited for until it answers, killed with
 * the test process if that dies without its after hooks, stopped by pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

export class ServerProcess {
  private stderr = '';
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    child.stderr!.on('data', (d) => (this.stderr = (this.stderr + d).slice(-4000)));
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    this.exited = new Promise((resolve) => child.once('exit', () => {
      process.off('exit', killOnExit);
      resolve();
    }));
  }

  /** Starts `file` and waits (10 s at most) until `answers` says it serves. */
  static async start(name: string, file: string, args: readonly string[], answers: () => Promise<boolean>, cwd?: string): Promise<ServerProcess> {
    const server = new ServerProcess(spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], ...(cwd ? { cwd } : {}) }));
    for (let i = 0; i < 200; i++) {
      if (server.child.exitCode !== null) throw new Error(`${name} exited: ${server.stderr}`);
      if (await answers()) return server;
      await sleep(50);
    }
    await server.stop();
    throw new Error(`${name} did not answer within 10 s: ${server.stderr}`);
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Stops it (SIGKILL by default: as abrupt as a crash), waiting until the process is gone. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    await this.exited;
  }
}
