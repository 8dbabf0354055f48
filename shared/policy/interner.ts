/**
 * One copy of each value that many endpoints share: their node, namespace, profile lists and label
 * sets. JSON.parse gives every record its own strings and objects; at 100,000 endpoints, keeping one
 * of each is most of the policy keeper's memory. A calculator owns one (it goes with the calculator
 * at a resync, so values no endpoint holds any more do not pile up beyond one resync period).
 * What it hands out is frozen: a shared value must never be changed through one holder.
 */
import type { Labels } from './selector';

const EMPTY_LIST: readonly string[] = Object.freeze([]);
const EMPTY_LABELS: Labels = Object.freeze({});

export class Interner {
  private readonly strings = new Map<string, string>();
  private readonly lists = new Map<string, readonly string[]>();
  private readonly labelSets = new Map<string, Labels>();

  string(text: string): string {
    const held = this.strings.get(text);
    if (held !== undefined) return held;
    this.strings.set(text, text);
    return text;
  }

  list(items: readonly string[]): readonly string[] {
    if (items.length === 0) return EMPTY_LIST;
    const key = items.join('\0');
    const held = this.lists.get(key);
    if (held) return held;
    const list = Object.freeze(items.map((item) => this.string(item)));
    this.lists.set(key, list);
    return list;
  }

  /** Label sets alike in the same key order are shared (one writer writes them alike). */
  labels(labels: Labels): Labels {
    const key = JSON.stringify(labels);
    if (key === '{}') return EMPTY_LABELS;
    const held = this.labelSets.get(key);
    if (held) return held;
    // Made as JSON.parse makes it: every key its own property, "__proto__" too (an assignment
    // would set the prototype and lose that label, and a selector that names it).
    const set = Object.freeze(Object.fromEntries(Object.entries(labels).map(([k, v]) => [this.string(k), this.string(v)])));
    this.labelSets.set(key, set);
    return set;
  }
}
