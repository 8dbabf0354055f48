/**
 * Calico's label selector language: parsed once into a tree, evaluated against label maps, and
 * printed back in one canonical form (equal selectors print alike, so they share one IP set).
 *
 *   expr    := and ('||' and)*
 *   and     := unary ('&&' unary)*
 *   unary   := '!' unary | '(' expr ')' | 'all()' | 'has(' key ')' | key op
 *   op      := '==' str | '!=' str | 'in' set | 'not in' set | 'contains' str
 *            | 'starts with' str | 'ends with' str
 *   set     := '{' (str (',' str)*)? '}'
 *
 * Strings are quoted with ' or " and have no escapes; keys are [a-zA-Z0-9_./-]{1,512}, as Calico's.
 * The empty selector is all(). `k != 'v'` and `k not in {...}` also match endpoints without `k`.
 */
import { CalicoError } from '../errors';

export type Selector =
  | { readonly op: 'all' }
  | { readonly op: 'has'; readonly key: string }
  | { readonly op: '==' | '!=' | 'contains' | 'starts with' | 'ends with'; readonly key: string; readonly value: string }
  | { readonly op: 'in' | 'not in'; readonly key: string; readonly values: readonly string[] }
  | { readonly op: '!'; readonly operand: Selector }
  | { readonly op: '&&' | '||'; readonly operands: readonly Selector[] };

export type Labels = Readonly<Record<string, string>>;

/** A selector that does not parse: the position (0-based, in characters) and what was expected. */
export class SelectorSyntaxError extends CalicoError {
  readonly code = 'POLICY_BAD_SELECTOR';

  constructor(
    readonly selector: string,
    readonly position: number,
    readonly reason: string,
  ) {
    super(`invalid selector ${JSON.stringify(selector)}: ${reason} at position ${position}`);
  }
}

type Token =
  | { kind: 'key'; text: string; at: number }
  | { kind: 'string'; text: string; at: number }
  | { kind: '(' | ')' | '{' | '}' | ',' | '==' | '!=' | '!' | '&&' | '||' | 'in' | 'not in' | 'contains' | 'starts with' | 'ends with' | 'all()' | 'end'; at: number }
  | { kind: 'has'; text: string; at: number };

const KEY = '[a-zA-Z0-9_./-]{1,512}';
/** Tried in order where a symbol does not decide the token, as Calico's tokenizer does. */
const WORDS: readonly [RegExp, (m: RegExpExecArray, at: number) => Token][] = [
  [new RegExp(`^has\\(\\s*(${KEY})\\s*\\)`), (m, at) => ({ kind: 'has', text: m[1]!, at })],
  [/^all\(\s*\)/, (_m, at) => ({ kind: 'all()', at })],
  [/^not\s*in\b/, (_m, at) => ({ kind: 'not in', at })],
  [/^in\b/, (_m, at) => ({ kind: 'in', at })],
  [/^contains\b/, (_m, at) => ({ kind: 'contains', at })],
  [/^starts\s*with\b/, (_m, at) => ({ kind: 'starts with', at })],
  [/^ends\s*with\b/, (_m, at) => ({ kind: 'ends with', at })],
  [new RegExp(`^${KEY}`), (m, at) => ({ kind: 'key', text: m[0], at })],
];
const SYMBOLS = ['==', '!=', '&&', '||', '(', ')', '{', '}', ',', '!'] as const;

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let at = 0;
  while (true) {
    while (at < source.length && (source[at] === ' ' || source[at] === '\t')) at++;
    if (at >= source.length) {
      tokens.push({ kind: 'end', at });
      return tokens;
    }
    const rest = source.slice(at);
    const quote = rest[0];
    if (quote === '"' || quote === "'") {
      const close = rest.indexOf(quote, 1);
      if (close < 0) throw new SelectorSyntaxError(source, at, 'unterminated string');
      tokens.push({ kind: 'string', text: rest.slice(1, close), at });
      at += close + 1;
      continue;
    }
    const symbol = SYMBOLS.find((s) => rest.startsWith(s));
    // A key may start with a symbol's character only if that symbol is not one ("-" and "." are keys).
    if (symbol) {
      tokens.push({ kind: symbol, at });
      at += symbol.length;
      continue;
    }
    const word = WORDS.map(([pattern, make]) => {
      const m = pattern.exec(rest);
      return m ? { token: make(m, at), length: m[0].length } : undefined;
    }).find((w) => w !== undefined);
    if (!word) throw new SelectorSyntaxError(source, at, `unexpected character ${JSON.stringify(rest[0])}`);
    tokens.push(word.token);
    at += word.length;
  }
}

class Parser {
  private next = 0;

  constructor(
    private readonly source: string,
    private readonly tokens: Token[],
  ) {}

  parse(): Selector {
    if (this.peek().kind === 'end') return { op: 'all' };
    const selector = this.or();
    this.expect('end', 'the end of the selector');
    return selector;
  }

  private peek(): Token {
    return this.tokens[this.next]!;
  }

  private take(): Token {
    return this.tokens[this.next++]!;
  }

  private fail(token: Token, expected: string): never {
    const found = token.kind === 'end' ? 'the end' : 'text' in token ? JSON.stringify(token.text) : `"${token.kind}"`;
    throw new SelectorSyntaxError(this.source, token.at, `expected ${expected}, found ${found}`);
  }

  private expect<K extends Token['kind']>(kind: K, what: string): Extract<Token, { kind: K }> {
    const token = this.take();
    if (token.kind !== kind) this.fail(token, what);
    return token as Extract<Token, { kind: K }>;
  }

  private or(): Selector {
    const operands = [this.and()];
    while (this.peek().kind === '||') {
      this.take();
      operands.push(this.and());
    }
    return operands.length === 1 ? operands[0]! : { op: '||', operands };
  }

  private and(): Selector {
    const operands = [this.unary()];
    while (this.peek().kind === '&&') {
      this.take();
      operands.push(this.unary());
    }
    return operands.length === 1 ? operands[0]! : { op: '&&', operands };
  }

  private unary(): Selector {
    const token = this.take();
    switch (token.kind) {
      case '!':
        return { op: '!', operand: this.unary() };
      case '(': {
        const inner = this.or();
        this.expect(')', '")"');
        return inner;
      }
      case 'all()':
        return { op: 'all' };
      case 'has':
        return { op: 'has', key: token.text };
      case 'key':
        return this.comparison(token.text);
      default:
        return this.fail(token, 'a label, has(), all(), "!" or "("');
    }
  }

  private comparison(key: string): Selector {
    const token = this.take();
    // A well-formed has(key) or all() is one token: here the call is open, or holds something else.
    if ((key === 'has' || key === 'all') && token.kind === '(') return this.openCall(key);
    switch (token.kind) {
      case '==':
      case '!=':
      case 'contains':
      case 'starts with':
      case 'ends with':
        return { op: token.kind, key, value: this.expect('string', 'a quoted string').text };
      case 'in':
      case 'not in':
        return { op: token.kind, key, values: this.set() };
      default:
        return this.fail(token, `an operator after label ${JSON.stringify(key)} (==, !=, in, not in, contains, starts with, ends with)`);
    }
  }

  /** The error for `has(` or `all(` that is not closed (or holds what it may not). */
  private openCall(name: 'has' | 'all'): never {
    if (name === 'has') {
      const label = this.take();
      if (label.kind !== 'key') return this.fail(label, 'a label inside has( )');
      return this.fail(this.take(), `")" to close has(${label.text}`);
    }
    return this.fail(this.take(), '")" to close all(');
  }

  private set(): string[] {
    this.expect('{', '"{"');
    const values: string[] = [];
    if (this.peek().kind === '}') {
      this.take();
      return values;
    }
    while (true) {
      values.push(this.expect('string', 'a quoted string').text);
      const token = this.take();
      if (token.kind === '}') return values;
      if (token.kind !== ',') this.fail(token, '"," or "}"');
    }
  }
}

export function parseSelector(source: string): Selector {
  return new Parser(source, tokenize(source)).parse();
}

export function matches(selector: Selector, labels: Labels): boolean {
  switch (selector.op) {
    case 'all':
      return true;
    case 'has':
      return Object.hasOwn(labels, selector.key);
    case '==':
      return Object.hasOwn(labels, selector.key) && labels[selector.key] === selector.value;
    case '!=':
      return !Object.hasOwn(labels, selector.key) || labels[selector.key] !== selector.value;
    case 'contains':
      return Object.hasOwn(labels, selector.key) && labels[selector.key]!.includes(selector.value);
    case 'starts with':
      return Object.hasOwn(labels, selector.key) && labels[selector.key]!.startsWith(selector.value);
    case 'ends with':
      return Object.hasOwn(labels, selector.key) && labels[selector.key]!.endsWith(selector.value);
    case 'in':
      return Object.hasOwn(labels, selector.key) && selector.values.includes(labels[selector.key]!);
    case 'not in':
      return !Object.hasOwn(labels, selector.key) || !selector.values.includes(labels[selector.key]!);
    case '!':
      return !matches(selector.operand, labels);
    case '&&':
      return selector.operands.every((s) => matches(s, labels));
    case '||':
      return selector.operands.some((s) => matches(s, labels));
  }
}

const quoted = (text: string) => (text.includes("'") ? `"${text}"` : `'${text}'`);

/** The canonical text: what the selector means, whatever spacing, quotes or parentheses it had. */
export function printSelector(selector: Selector): string {
  switch (selector.op) {
    case 'all':
      return 'all()';
    case 'has':
      return `has(${selector.key})`;
    case 'in':
    case 'not in':
      return `${selector.key} ${selector.op} {${[...new Set(selector.values)].sort().map(quoted).join(', ')}}`;
    case '!':
      return `!${grouped(selector.operand)}`;
    case '&&':
    case '||':
      return selector.operands.map(grouped).join(` ${selector.op} `);
    default:
      return `${selector.key} ${selector.op} ${quoted(selector.value)}`;
  }
}

function grouped(selector: Selector): string {
  return selector.op === '&&' || selector.op === '||' ? `(${printSelector(selector)})` : printSelector(selector);
}

/** Both must hold (used to scope a namespaced policy's selectors to its namespace). */
export function both(a: Selector, b: Selector): Selector {
  if (a.op === 'all') return b;
  if (b.op === 'all') return a;
  return { op: '&&', operands: [a, b] };
}
