import test from 'ava';
import { MemberHealth } from '../../shared/datastore/member-health';

const clock = () => {
  let now = 1_000_000;
  return { now: () => now, advance: (ms: number) => (now += ms) };
};

test('member health - members that have not failed come first, shuffled; the failed last, the longest ago first', (t) => {
  const time = clock();
  const health = new MemberHealth(['a', 'b', 'c', 'd'], 30_000, time.now);
  t.deepEqual([...health.round()].sort(), ['a', 'b', 'c', 'd']);
  health.failed('b');
  time.advance(10);
  health.failed('a');
  for (let i = 0; i < 20; i++) {
    const round = health.round();
    t.deepEqual([...round.slice(0, 2)].sort(), ['c', 'd']);
    t.deepEqual(round.slice(2), ['b', 'a']);
  }
  const seenFirst = new Set(Array.from({ length: 50 }, () => health.round()[0]));
  t.deepEqual([...seenFirst].sort(), ['c', 'd'], 'the healthy share the load');
});

test('member health - an answer or the end of the memory puts a failed member back among the others', (t) => {
  const time = clock();
  const health = new MemberHealth(['a', 'b'], 30_000, time.now, () => 0.99);
  health.failed('a');
  t.deepEqual(health.round(), ['b', 'a']);
  health.answered('a');
  t.deepEqual(health.round().sort(), ['a', 'b']);
  health.failed('b');
  time.advance(29_999);
  t.deepEqual(health.round(), ['a', 'b']);
  time.advance(1);
  t.is(health.round().length, 2);
  t.deepEqual(new MemberHealth(['a', 'b'], 30_000, time.now, () => 0).round(), ['b', 'a'], 'shuffled as the random source says');
});

test('member health - the order of one call takes each member once per round, ordered afresh at each round', (t) => {
  const health = new MemberHealth(['a', 'b', 'c']);
  const order = health.order();
  const first = [order.next().value, order.next().value, order.next().value];
  t.deepEqual([...first].sort(), ['a', 'b', 'c'], 'three attempts, three members');
  health.failed(first[0]!);
  const second = [order.next().value, order.next().value, order.next().value];
  t.is(second[2], first[0], 'the member that failed goes last in the next round');
});
