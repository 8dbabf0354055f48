import test from 'ava';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { LockBusyError, withHostLock } from '../../shared/host-lock';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('host lock - holders of one key take turns; other keys do not wait', async (t) => {
  const key = randomUUID();
  const events: string[] = [];
  const hold = (name: string, ms: number, lockKey = key) => withHostLock(lockKey, 'the test', 5000, async () => {
    events.push(`${name} in`);
    await sleep(ms);
    events.push(`${name} out`);
    return name;
  });
  const results = await Promise.all([hold('a', 80), hold('b', 10), hold('other', 10, randomUUID())]);
  t.deepEqual(results, ['a', 'b', 'other']);
  t.deepEqual(events.filter((e) => !e.startsWith('other')), ['a in', 'a out', 'b in', 'b out']);
  t.true(events.indexOf('other out') < events.indexOf('a out'), 'another key ran while the first was held');
});

test('host lock - a holder that fails releases the lock', async (t) => {
  const key = randomUUID();
  await t.throwsAsync(withHostLock(key, 'the test', 1000, () => Promise.reject(new Error('boom'))), { message: 'boom' });
  t.is(await withHostLock(key, 'the test', 0, async () => 'free'), 'free');
});

test('host lock - waiting longer than allowed is LOCK_BUSY, naming what is locked', async (t) => {
  const key = randomUUID();
  let release!: () => void;
  const held = withHostLock(key, 'the test', 1000, () => new Promise<void>((resolve) => (release = resolve)));
  await sleep(20);
  const err = await t.throwsAsync(withHostLock(key, 'container x', 60, async () => 'never'), { instanceOf: LockBusyError });
  t.is(err!.code, 'LOCK_BUSY');
  t.regex(err!.message, /container x .*try again later/);
  release();
  await held;
});

test('host lock - a process killed while holding it leaves nothing behind', async (t) => {
  const key = randomUUID();
  const lockModule = fileURLToPath(new URL('../../shared/host-lock.ts', import.meta.url));
  const holder = spawn(process.execPath, ['--import', 'tsx', '-e', `
    const { withHostLock } = await import(${JSON.stringify(lockModule)});
    await withHostLock(${JSON.stringify(key)}, 'the test', 1000, () => { console.log('held'); return new Promise((resolve) => setTimeout(resolve, 60000)); });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => holder.kill('SIGKILL'));
  await once(holder.stdout!, 'data');
  await t.throwsAsync(withHostLock(key, 'the test', 50, async () => undefined), { instanceOf: LockBusyError });
  holder.kill('SIGKILL');
  await once(holder, 'exit');
  t.is(await withHostLock(key, 'the test', 500, async () => 'taken'), 'taken');
});
