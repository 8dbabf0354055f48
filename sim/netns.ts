/**
 * Network namespaces made by a test and removed by it. Names carry a random part so parallel
 * test files and leftovers of an interrupted run never collide.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Namespaces still alive; one exit hook removes them if the test process dies without its after hooks. */
const alive = new Set<string>();
process.once('exit', () => {
  for (const name of alive) {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});

export class Netns {
  private constructor(readonly name: string) {}

  get path(): string {
    return `/run/netns/${this.name}`;
  }

  static async create(label: string): Promise<Netns> {
    const name = `t${label}-${Math.random().toString(36).slice(2, 8)}`.slice(0, 32);
    await run('ip', ['netns', 'add', name]);
    const ns = new Netns(name);
    alive.add(name);
    await ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** `ip -n NAME ...` */
  async ip(...args: string[]): Promise<string> {
    return (await run('ip', ['-n', this.name, ...args])).stdout;
  }

  async json<T>(...args: string[]): Promise<T> {
    return JSON.parse((await run('ip', ['-n', this.name, '-j', ...args])).stdout || '[]') as T;
  }

  /** Runs a program inside the namespace (nsenter keeps the cgroup and sysfs view untouched). */
  async exec(file: string, args: string[], options: { input?: string; timeout?: number } = {}): Promise<{ stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = execFile('nsenter', [`--net=${this.path}`, file, ...args], { timeout: options.timeout ?? 60_000 }, (err, stdout, stderr) => {
        if (err) reject(Object.assign(err, { stdout, stderr }));
        else resolve({ stdout, stderr });
      });
      child.stdin!.on('error', () => undefined); // programs that never read stdin close it early
      child.stdin!.end(options.input ?? '');
    });
  }

  async ping(address: string): Promise<boolean> {
    try {
      await this.exec('ping', ['-c', '1', '-W', '2', address], { timeout: 5000 });
      return true;
    } catch {
      return false;
    }
  }

  /** Links, addresses, routes and neighbours, for "left as it was" comparisons. */
  async snapshot(): Promise<string> {
    const parts = await Promise.all([
      this.ip('-o', 'link', 'show'),
      this.ip('-o', 'addr', 'show'),
      this.ip('route', 'show', 'table', 'all'),
      this.ip('-6', 'route', 'show', 'table', 'all'),
      this.ip('neigh', 'show'),
    ]);
    return parts.join('\n');
  }

  async destroy(): Promise<void> {
    alive.delete(this.name);
    await run('ip', ['netns', 'del', this.name]).catch(() => undefined);
  }
}
