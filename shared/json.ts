/**
 * JSON from outside (stdin, requests, etcd, files) read with its nesting bounded: JSON.parse takes
 * any depth, but whatever walks the result afterwards (a copy, a log line, a delegate's stdin) would
 * exhaust the stack on a value nested 100,000 deep. Ours nest a handful of levels.
 */
import { InvalidInputError } from './errors';

export const MAX_JSON_DEPTH = 64;

/** Refuses `text` when its arrays and objects nest deeper than `max` (strings are skipped over). */
export function checkJsonDepth(text: string, what: string, max = MAX_JSON_DEPTH): void {
  // Nesting deeper than `max` takes more than `max` brackets: most texts have far fewer, and
  // counting them is the runtime's own search, not a loop over every character here.
  if (bracketsAtMost(text, max)) return;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) throw new InvalidInputError(what, `JSON nested deeper than ${max} levels`);
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
}

function bracketsAtMost(text: string, max: number): boolean {
  let count = 0;
  for (const bracket of ['{', '[']) {
    for (let at = text.indexOf(bracket); at !== -1; at = text.indexOf(bracket, at + 1)) if (++count > max) return false;
  }
  return true;
}

/** JSON.parse, after checkJsonDepth. */
export function parseBoundedJson(text: string, what: string): unknown {
  checkJsonDepth(text, what);
  return JSON.parse(text);
}
