import test from 'ava';
import { casLoop } from '../../shared/ipam/cas';
import { ExcessiveConflictsError } from '../../shared/ipam/errors';

test('cas - retries conflicts, returns when done', async (t) => {
  let rounds = 0;
  const result = await casLoop('op', async () => (++rounds < 3 ? 'conflict' : { done: 'yes' }), 10);
  t.is(result, 'yes');
  t.is(rounds, 3);
});

test('cas - running out of retries is its own error, and nothing else is swallowed', async (t) => {
  const err = await t.throwsAsync(casLoop('auto-assign', async () => 'conflict', 3), { instanceOf: ExcessiveConflictsError });
  t.regex(err!.message, /auto-assign gave up after 3 conflicting concurrent updates/);
  await t.throwsAsync(casLoop('op', async () => { throw new Error('etcd down'); }), { message: 'etcd down' });
});

test('cas - "again" re-runs without counting as a conflict, but is bounded too', async (t) => {
  let rounds = 0;
  await t.throwsAsync(casLoop('op', async () => { rounds++; return 'again'; }, 2), { instanceOf: ExcessiveConflictsError });
  t.is(rounds, 8);
});
