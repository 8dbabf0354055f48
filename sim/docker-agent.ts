/**
 * A Docker host for tests: dockerd inside a simulated host's network namespace, in a mount
 * namespace of its own whose /run/docker/plugins is a private directory (several agents on one
 * machine must not see each other's driver sockets), plus our node daemon in the same two
 * namespaces, as on a real agent. Everything is stopped by pid and removed by destroy().
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { Netns } from './netns';
import { waitFor } from './wait';
import { killBird } from './daemon';

const run = promisify(execFile);
const DOCKER = '/usr/bin/docker';

function track(child: ChildProcess): Promise<void> {
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  return new Promise((done) => child.once('exit', () => {
    process.off('exit', killOnExit);
    done();
  }));
}

/** A busybox rootfs tarball with the applets the tests use, made once per process. */
let rootfsTar: string | undefined;
async function busyboxTar(): Promise<string> {
  if (rootfsTar) return rootfsTar;
  const dir = mkdtempSync(join(tmpdir(), 'busybox-rootfs-'));
  const root = join(dir, 'rootfs');
  for (const sub of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev']) mkdirSync(join(root, sub), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  for (const applet of ['sh', 'ping', 'ip', 'sleep', 'true', 'cat', 'ls', 'nc', 'wget', 'hostname']) symlinkSync('busybox', join(root, 'bin', applet));
  await run('tar', ['-C', root, '-cf', join(dir, 'rootfs.tar'), '.']);
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  rootfsTar = join(dir, 'rootfs.tar');
  return rootfsTar;
}

export interface DaemonOptions {
  readonly etcdEndpoint: string;
  readonly prefix: string;
  readonly node: string;
  readonly driver: string;
  readonly ipamDriver: string;
  readonly extraArgs?: readonly string[];
  /** Where its whole log is appended too (daemonLog keeps only the end). */
  readonly logFile?: string;
}

export class DockerAgent {
  private holderExit: Promise<void> | undefined;
  private holder: ChildProcess | undefined;
  private dockerd: ChildProcess | undefined;
  private dockerdExit: Promise<void> | undefined;
  private dockerdArgs: string[] = [];
  private daemon: ChildProcess | undefined;
  private daemonExit: Promise<void> | undefined;
  daemonLog = '';

  private constructor(
    readonly host: Netns,
    readonly dir: string,
  ) {}

  get socket(): string {
    return join(this.dir, 'docker.sock');
  }

  get pluginsDir(): string {
    return join(this.dir, 'plugins');
  }

  get cniSocket(): string {
    return join(this.dir, 'cni.sock');
  }

  private get mountNs(): string {
    return `/proc/${this.holder!.pid}/ns/mnt`;
  }

  /** dockerd on `host`, with a cluster store when given (etcd://host:port, for global-scope networks). */
  static async start(host: Netns, options: { clusterStore?: string } = {}): Promise<DockerAgent> {
    const agent = new DockerAgent(host, mkdtempSync(join(tmpdir(), 'docker-agent-')));
    try {
      await agent.boot(options.clusterStore);
      return agent;
    } catch (err) {
      await agent.destroy();
      throw err;
    }
  }

  private async boot(clusterStore: string | undefined): Promise<void> {
    mkdirSync(this.pluginsDir, { recursive: true });
    mkdirSync('/run/docker/plugins', { recursive: true });
    // The holder keeps the mount namespace alive; dockerd and our daemon join it.
    this.holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind '${this.pluginsDir}' /run/docker/plugins && exec sleep 100000`], { stdio: 'ignore' });
    this.holderExit = track(this.holder);
    await waitFor('the mount namespace', async () => {
      try {
        const { stdout } = await run('nsenter', [`--mount=${this.mountNs}`, 'findmnt', '-n', '/run/docker/plugins']);
        return stdout.includes('/run/docker/plugins');
      } catch {
        return false;
      }
    }, 5000);
    const args = [
      `--mount=${this.mountNs}`, `--net=${this.host.path}`, 'dockerd',
      '--bridge=none', '--iptables=false', '--ip-masq=false',
      '--data-root', join(this.dir, 'data'), '--exec-root', join(this.dir, 'exec'), '--pidfile', join(this.dir, 'dockerd.pid'),
      '-H', `unix://${this.socket}`,
      ...(clusterStore ? ['--cluster-store', clusterStore, '--cluster-advertise', 'eth0:2376'] : []),
    ];
    this.dockerdArgs = args;
    await this.startDockerd();
    await run(DOCKER, ['-H', `unix://${this.socket}`, 'import', await busyboxTar(), 'local/busybox']);
  }

  private async startDockerd(): Promise<void> {
    this.dockerd = spawn('nsenter', this.dockerdArgs, { stdio: 'ignore' });
    this.dockerdExit = track(this.dockerd);
    await waitFor('dockerd', async () => existsSync(this.socket) && (await this.docker('version').then(() => true, () => false)), 30_000);
  }

  /** Stops dockerd, SIGKILL if it takes more than 15 s. */
  private async stopDockerd(): Promise<void> {
    if (!this.dockerd || this.dockerd.exitCode !== null || this.dockerd.signalCode !== null) return;
    this.dockerd.kill('SIGTERM');
    await Promise.race([this.dockerdExit, sleep(15_000)]);
    if (this.dockerd.exitCode === null && this.dockerd.signalCode === null) this.dockerd.kill('SIGKILL');
    await this.dockerdExit;
  }

  /**
   * A service restart of dockerd on the same data: its containers (no restart policy, no live
   * restore) stop with it and stay stopped; networks and images stay.
   */
  async restartDockerd(): Promise<void> {
    await this.stopDockerd();
    await this.startDockerd();
  }

  /** Starts our node daemon in the agent's namespaces. */
  async startDaemon(options: DaemonOptions): Promise<void> {
    const args = [
      `--mount=${this.mountNs}`, `--net=${this.host.path}`, resolve('dist/bin/calico-libnetwork'),
      '--plugin-dir', '/run/docker/plugins', '--network-driver', options.driver, '--ipam-driver', options.ipamDriver,
      '--cni-socket', this.cniSocket, '--docker-host', `unix://${this.socket}`,
      '--etcd-endpoints', options.etcdEndpoint, '--etcd-prefix', options.prefix, '--nodename', options.node, '--log-level', 'debug',
      // Files of its own, never the host's /var/lib/calico or /var/run/calico.
      '--mtu-file', join(this.dir, 'mtu'), '--bird-dir', join(this.dir, 'bird'),
      ...(options.extraArgs ?? []),
    ];
    const daemon = spawn('nsenter', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    daemon.stderr!.on('data', (d) => {
      this.daemonLog = (this.daemonLog + d).slice(-50_000);
      if (options.logFile) appendFileSync(options.logFile, d);
    });
    this.daemon = daemon;
    this.daemonExit = track(daemon);
    await waitFor('the node daemon', () => existsSync(join(this.pluginsDir, `${options.driver}.sock`)) || daemon.exitCode !== null, 10_000);
    if (daemon.exitCode !== null) throw new Error(`the node daemon exited: ${this.daemonLog}`);
  }

  async stopDaemon(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.daemon) return;
    if (this.daemon.exitCode === null && this.daemon.signalCode === null) this.daemon.kill(signal);
    await this.daemonExit;
    this.daemon = undefined;
  }

  /** Runs the docker CLI against this agent's dockerd. */
  async docker(...args: string[]): Promise<{ stdout: string; stderr: string }> {
    return run(DOCKER, ['-H', `unix://${this.socket}`, ...args], { timeout: 60_000 });
  }

  /** What Docker says of a container's attachment to a network: its address or its endpoint's ID. */
  async networkSetting(container: string, network: string, field: 'IPAddress' | 'EndpointID'): Promise<string> {
    return (await this.docker('inspect', '-f', `{{(index .NetworkSettings.Networks ${JSON.stringify(network)}).${field}}}`, container)).stdout.trim();
  }

  /** The same as docker, resolving to the error's stderr instead of throwing (for expected failures). */
  async dockerFails(...args: string[]): Promise<string> {
    try {
      await this.docker(...args);
    } catch (err) {
      return String((err as { stderr?: string }).stderr ?? err);
    }
    throw new Error(`docker ${args.join(' ')} succeeded but was expected to fail`);
  }

  async destroy(): Promise<void> {
    if (this.dockerd && this.dockerd.exitCode === null) {
      // Containers first, while our driver still answers (Docker retries an absent plugin for
      // many seconds), so that dockerd's own shutdown has nothing to wait for.
      const containers = await this.docker('ps', '-aq').then((r) => r.stdout.split('\n').filter(Boolean), () => []);
      if (containers.length > 0) await this.docker('rm', '-f', ...containers).catch(() => undefined);
    }
    await this.stopDaemon('SIGKILL');
    killBird(join(this.dir, 'bird'));
    await this.stopDockerd();
    this.holder?.kill('SIGKILL');
    await Promise.race([this.holderExit, sleep(5000)]);
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // a mount of dockerd's still held by a lingering process; it goes when that process does
    }
  }
}
