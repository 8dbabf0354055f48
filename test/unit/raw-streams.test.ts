import test from 'ava';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { forward } from '../../shared/daemon-forward';
import { rawStreams, type RawStreams } from '../../shared/raw-streams';

const TIMEOUTS = { connectMs: 500, answerMs: 2000 };

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'raw-streams-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A unix-socket server that hands each whole request to `answer` (which may never end the socket). */
async function serve(t: { teardown(fn: () => void): void }, path: string, answer: (request: Buffer, socket: Socket) => void): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => answer(Buffer.concat(chunks), socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  t.teardown(() => void server.close());
  return server;
}

function streams(): RawStreams {
  const found = rawStreams();
  if (!found) throw new Error('no raw streams on this node');
  return found;
}

test('raw streams - the node our tests run on is one they are verified on, so the fast path is what these tests exercise', (t) => {
  t.is(process.versions.node.split('.')[0], '20');
  t.truthy(rawStreams());
});

test('raw streams - an exchange carries megabytes each way intact', async (t) => {
  const path = join(tempDir(t), 's.sock');
  await serve(t, path, (request, socket) => socket.end(Buffer.concat([Buffer.from('echo:'), request])));
  const request = 'é'.repeat(1 << 20) + '\n';
  const answer = await streams().exchange(path, request, TIMEOUTS);
  t.is(answer?.toString('utf8'), `echo:${request}`);
});

test('raw streams - no listener, not a socket, a silent server, a long path: no answer, and no hang', async (t) => {
  const dir = tempDir(t);
  t.is(await streams().exchange(join(dir, 'absent.sock'), 'x', TIMEOUTS), undefined);
  writeFileSync(join(dir, 'file'), '');
  t.is(await streams().exchange(join(dir, 'file'), 'x', TIMEOUTS), undefined);
  await serve(t, join(dir, 'silent.sock'), () => undefined);
  const started = Date.now();
  t.is(await streams().exchange(join(dir, 'silent.sock'), 'x', { connectMs: 500, answerMs: 300 }), undefined);
  t.true(Date.now() - started < 2000);
  t.is(await streams().exchange(join(dir, 'x'.repeat(200)), 'x', TIMEOUTS), undefined);
});

test('raw streams - a FIFO is read to its end; one whose writer stays gives what came by the deadline', async (t) => {
  const dir = tempDir(t);
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  let reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  let writer = openSync(fifo, constants.O_WRONLY);
  writeSync(writer, '{"cniVersion":"1.0.0"}');
  closeSync(writer);
  t.deepEqual(await streams().readToEnd(reader, 2000), { data: Buffer.from('{"cniVersion":"1.0.0"}'), complete: true });

  reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  writer = openSync(fifo, constants.O_WRONLY);
  t.teardown(() => closeSync(writer));
  writeSync(writer, 'partial');
  t.deepEqual(await streams().readToEnd(reader, 300), { data: Buffer.from('partial'), complete: false });
});

test('raw streams - forward answers alike through the raw streams and through net', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'daemon.sock');
  await serve(t, path, (request, socket) => {
    const { env } = JSON.parse(request.toString()) as { env: Record<string, string> };
    socket.end(JSON.stringify({ stdout: `ran ${env.CNI_COMMAND}`, exitCode: 0 }));
  });
  const request = { kind: 'calico' as const, env: { CNI_COMMAND: 'ADD' }, stdin: '{}' };
  t.deepEqual(await forward(path, request), { stdout: 'ran ADD', exitCode: 0 });
  t.deepEqual(await forward(path, request, 'net'), { stdout: 'ran ADD', exitCode: 0 });
  // An answer that is not an outcome, or none: the caller runs the command itself.
  await serve(t, join(dir, 'odd.sock'), (_, socket) => socket.end('{"stdout": 5}'));
  t.is(await forward(join(dir, 'odd.sock'), request), undefined);
  t.is(await forward(join(dir, 'odd.sock'), request, 'net'), undefined);
  t.is(await forward(join(dir, 'absent.sock'), request), undefined);
  t.is(await forward(join(dir, 'absent.sock'), request, 'net'), undefined);
});
