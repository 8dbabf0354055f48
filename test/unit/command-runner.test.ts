import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandFailure, runCommand, startCommand, stopCommandHelper, useCommandHelper } from '../../shared/dataplane/command-runner';

const options = { timeoutMs: 5000, maxBuffer: 1 << 20 };

// Serial: the helper is this process's, on or off for every command.
for (const through of ['this process', 'the helper'] as const) {
  const withRunner = async (body: () => Promise<void>) => {
    if (through === 'the helper') useCommandHelper();
    try {
      await body();
    } finally {
      stopCommandHelper();
    }
  };

  test.serial(`command runner (${through}) - a command gets its stdin and gives its output; a failure carries its stderr`, (t) =>
    withRunner(async () => {
      t.is((await runCommand('cat', [], 'hello\n', options)).stdout, 'hello\n');
      const failed = await t.throwsAsync(runCommand('sh', ['-c', 'echo bad >&2; exit 3'], '', options), { instanceOf: CommandFailure });
      t.is(failed?.stderr, 'bad\n');
    }));

  test.serial(`command runner (${through}) - a command started ahead runs once given its input, which it is given once`, (t) =>
    withRunner(async () => {
      const started = startCommand('cat', [], options);
      await sleep(50);
      const first = started.finish('late input');
      t.is((await first).stdout, 'late input');
      t.is((await started.finish('ignored')).stdout, 'late input');
      t.true(started.ended, 'ended once it has run');
      await t.notThrowsAsync(started.exited);
      // One that cannot start fails when its input is given, never as an unhandled rejection, and
      // says it has ended before that.
      const missing = startCommand('/nonexistent/command', [], options);
      t.false(missing.ended);
      await sleep(50);
      t.true(missing.ended);
      await t.notThrowsAsync(missing.exited, 'exited settles, failed or not');
      await t.throwsAsync(missing.finish(''), { instanceOf: CommandFailure });
    }));
}
