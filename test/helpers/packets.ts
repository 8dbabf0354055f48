/**
 * Packets as a hostile task sends them, and listeners that say what arrived, inside namespaces
 * (test/fixtures/packets.py does the sending and listening). Every listener is bounded in time.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

const SCRIPT = resolve('test/fixtures/packets.py');

export interface Heard {
  readonly source: string;
  readonly payload: string;
}

/** Runs packets.py in the namespace at `netnsPath`; resolves when it exits. */
export function packets(netnsPath: string, args: readonly (string | number)[]): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn('nsenter', [`--net=${netnsPath}`, '/usr/bin/python3', SCRIPT, ...args.map(String)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => (code === 0 ? done(out) : fail(new Error(`packets.py ${args.join(' ')} exited ${code}: ${err}`))));
  });
}

/**
 * A listener (`listen PORT`, `listen-icmp`) running for `seconds`; resolves once it is ready, with
 * what it will have heard.
 */
export async function listener(netnsPath: string, args: readonly (string | number)[], seconds: number): Promise<{ heard: Promise<Heard[]> }> {
  const child = spawn('nsenter', [`--net=${netnsPath}`, '/usr/bin/python3', SCRIPT, ...args.map(String), String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  await new Promise<void>((ready, fail) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (out.startsWith('ready\n')) ready();
    });
    child.on('exit', (code) => fail(new Error(`listener exited ${code} before it was ready: ${err}`)));
  });
  const heard = new Promise<Heard[]>((done) => child.on('exit', () => done(out.split('\n').slice(1).filter(Boolean).map((line) => {
    const [source, ...payload] = line.split(' ');
    return { source: source!, payload: payload.join(' ') };
  }))));
  return { heard };
}
