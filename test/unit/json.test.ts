import test from 'ava';
import { checkJsonDepth, parseBoundedJson } from '../../shared/json';

test('json - nesting is bounded before anything walks the value; strings and escapes are skipped over', (t) => {
  t.notThrows(() => checkJsonDepth(`${'['.repeat(64)}${']'.repeat(64)}`, 'x'));
  t.throws(() => checkJsonDepth(`${'['.repeat(65)}${']'.repeat(65)}`, 'stdin'), { message: 'invalid stdin: JSON nested deeper than 64 levels' });
  t.throws(() => parseBoundedJson(`{"a":${'{"b":'.repeat(100_000)}1${'}'.repeat(100_000)}}`, 'body'), { message: /nested deeper/ });
  t.deepEqual(parseBoundedJson(`{"s":"${'['.repeat(200)}\\"{"}`, 'x'), { s: `${'['.repeat(200)}"{` }, 'brackets inside strings are text');
});
