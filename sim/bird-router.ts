/**
 * A top-of-rack router for tests: BIRD 2 run inside a router namespace of the simulated fabric,
 * with a configuration the test writes (its AS, its neighbours), programming the router's kernel
 * with what it learns. Stopped by its pid.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Netns } from './netns';
import { waitFor } from './wait';

const run = promisify(execFile);

export interface TorNeighbour {
  readonly address: string;
  readonly asNumber: number;
}

export class BirdRouter {
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
  ) {
    const kill = () => child.kill('SIGKILL');
    process.once('exit', kill);
    this.exited = new Promise((done) => child.once('exit', () => {
      process.off('exit', kill);
      done();
    }));
  }

  get socket(): string {
    return join(this.dir, 'bird.ctl');
  }

  /**
   * BIRD as the router's BGP speaker: AS `asNumber`, a session with each neighbour, learned routes
   * into its kernel. `reflector`: a route reflector for neighbours of its own AS (each a client), which gives
   * itself as every route's next hop: hosts in other subnets reach each other's blocks through it.
   * `logFile`: where BIRD's own log goes (else its stderr, which nothing reads).
   */
  static async start(router: Netns, routerId: string, asNumber: number, neighbours: readonly TorNeighbour[], options: { reflector?: boolean; logFile?: string } = {}): Promise<BirdRouter> {
    const dir = mkdtempSync(join(tmpdir(), 'tor-bird-'));
    const config = [
      `router id ${routerId};`,
      options.logFile ? `log "${options.logFile}" all;` : 'log stderr all;',
      'protocol device { scan time 10; }',
      'protocol kernel { ipv4 { import none; export all; }; }',
      ...neighbours.map((n, i) => `protocol bgp host${i} { local as ${asNumber}; neighbor ${n.address} as ${n.asNumber}; connect delay time 1; connect retry time 2; error wait time 1, 10; graceful restart on;${options.reflector ? ' rr client;' : ''} ipv4 { import all; export all;${options.reflector ? ' next hop self;' : ''} }; }`),
    ].join('\n');
    writeFileSync(join(dir, 'bird.conf'), `${config}\n`);
    const child = spawn('nsenter', [`--net=${router.path}`, '/usr/sbin/bird', '-f', '-c', join(dir, 'bird.conf'), '-s', join(dir, 'bird.ctl')], { stdio: 'ignore' });
    const tor = new BirdRouter(child, dir);
    await waitFor('the router\'s BIRD', async () => tor.routes().then(() => true, () => false), 5000);
    return tor;
  }

  /** The prefixes in the router's BIRD table. */
  async routes(): Promise<string[]> {
    const { stdout } = await run('/usr/sbin/birdc', ['-s', this.socket, 'show route']);
    return stdout.split('\n').map((line) => /^(\d+\.\d+\.\d+\.\d+\/\d+)/.exec(line)?.[1]).filter((p): p is string => p !== undefined);
  }

  /** Each session's name, state and detail, and the routes of the table, as one line (for a failure's message). */
  async describe(): Promise<string> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return `BIRD exited (${this.child.exitCode ?? this.child.signalCode})`;
    const { stdout } = await run('/usr/sbin/birdc', ['-s', this.socket, 'show protocols']);
    const protocols = stdout.split('\n').filter((line) => /^(host|kernel|device)/.test(line)).map((line) => line.trim().split(/\s+/).filter((_, i) => i !== 1 && i !== 2).join(' '));
    // Each route with what BIRD made of it (`via …`, `unreachable`) and the next hop it was sent with.
    const detail = (await run('/usr/sbin/birdc', ['-s', this.socket, 'show route all'])).stdout;
    const routes: string[] = [];
    for (const line of detail.split('\n')) {
      const route = /^(\d+\.\d+\.\d+\.\d+\/\d+)\s+(\S+)/.exec(line);
      if (route) routes.push(`${route[1]} ${route[2]}`);
      const how = /^\s+(via \S+ on \S+|unreachable|blackhole|dev \S+)/.exec(line);
      if (how && routes.length > 0) routes[routes.length - 1] += ` ${how[1]}`;
      const nextHop = /BGP\.next_hop: (.*)$/.exec(line);
      if (nextHop && routes.length > 0) routes[routes.length - 1] += ` (next hop ${nextHop[1]!.trim()})`;
    }
    return `protocols: ${protocols.join('; ')} | routes: ${routes.join(', ')}`;
  }

  async destroy(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
