import test from 'ava';
import { SelectorSyntaxError, both, matches, parseSelector, printSelector } from '../../shared/policy/selector';

const labels = { app: 'web', tier: 'front-end', 'pcn.netA': '', 'example.com/team': "o'neil" };
const cases: [string, boolean][] = [
  ['', true],
  ['all()', true],
  ['has(app)', true],
  ['has( app )', true],
  ['!has(app)', false],
  ['has(pcn.netA)', true],
  ['has(pcn.netB)', false],
  ["app == 'web'", true],
  ['app == "db"', false],
  ["app != 'db'", true],
  ["missing != 'x'", true],
  ["app in {'web', 'db'}", true],
  ["app in {}", false],
  ["app not in {'web'}", false],
  ["missing not in {'web'}", true],
  ["tier contains 'nt-e'", true],
  ["tier starts with 'front'", true],
  ["tier startswith 'front'", true],
  ["tier ends with 'end'", true],
  ["missing ends with ''", false],
  ["example.com/team == \"o'neil\"", true],
  ["app == 'web' && has(tier)", true],
  ["app == 'db' || has(tier)", true],
  ["app == 'db' || has(x) && has(tier)", false],
  ["(app == 'db' || has(x)) && has(tier)", false],
  ["!(app == 'db') && !!has(app)", true],
  ["app == 'web' && (tier == 'x' || tier == 'front-end')", true],
];

for (const [source, expected] of cases) {
  test(`selector - ${JSON.stringify(source)} ${expected ? 'matches' : 'does not match'}`, (t) => {
    const parsed = parseSelector(source);
    t.is(matches(parsed, labels), expected);
    // The canonical text parses to the same meaning and prints the same again.
    const printed = printSelector(parsed);
    t.is(matches(parseSelector(printed), labels), expected);
    t.is(printSelector(parseSelector(printed)), printed);
  });
}

test('selector - equal meanings print alike', (t) => {
  t.is(printSelector(parseSelector("app=='a'")), printSelector(parseSelector("  ( app == \"a\" ) ")));
  t.is(printSelector(parseSelector("x in {'b','a','b'}")), "x in {'a', 'b'}");
  t.is(printSelector(parseSelector("a == 'x' || b == 'y' && !has(c)")), "a == 'x' || (b == 'y' && !has(c))");
  t.is(printSelector(both(parseSelector('all()'), parseSelector('has(a)'))), 'has(a)');
  t.is(printSelector(both(parseSelector('has(a) || has(b)'), parseSelector('has(c)'))), '(has(a) || has(b)) && has(c)');
});

const errors: [string, number, RegExp][] = [
  ["app = 'web'", 4, /unexpected character "="/],
  ["app == web", 7, /expected a quoted string, found "web"/],
  ["app == 'web", 7, /unterminated string/],
  ['has(app', 7, /expected "\)" to close has\(app, found the end/],
  ['has(', 4, /expected a label inside has\( \), found the end/],
  ['all(', 4, /expected "\)" to close all\(/],
  ["app == 'a' &&", 13, /expected a label.*found the end/],
  ["(app == 'a'", 11, /expected "\)"/],
  ["app in {'a' 'b'}", 12, /expected "," or "}"/],
  ["app in 'a'", 7, /expected "{"/],
  ['app', 3, /expected an operator after label "app"/],
  ["app == 'a' has(b)", 11, /expected the end of the selector/],
  ['a & b', 2, /unexpected character "&"/],
  ['€', 0, /unexpected character/],
];

for (const [source, position, reason] of errors) {
  test(`selector - ${JSON.stringify(source)} is refused at position ${position}`, (t) => {
    const err = t.throws(() => parseSelector(source), { instanceOf: SelectorSyntaxError });
    t.is(err!.code, 'POLICY_BAD_SELECTOR');
    t.regex(err!.message, reason);
    t.is(err!.position, position, err!.message);
    t.true(err!.message.includes(JSON.stringify(source)));
  });
}
