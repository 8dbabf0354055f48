/**
 * The daemon's one log of records that cannot be read. Its readers skip such a record alone (the
 * core's decodeEach tells them on a diagnostics channel; the policy keeper tells it directly, with
 * what it kept in force): each key is logged once, however many readers meet it and however often,
 * until a reader reads it good again, so a bad record never floods the log.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { malformedRecords } from '../shared/diagnostics';
import type { Fields, Logger } from '../shared/log';

/** Logged keys kept before the memory of them starts again (each is then logged once more). */
const REMEMBERED = 10_000;

export class MalformedRecordLog {
  private readonly logged = new Set<string>();
  private readonly onRecord = (message: unknown) => {
    const { key, error } = message as { key: string; error: string };
    this.skipped(key, error);
  };

  constructor(private readonly log: Logger) {
    subscribe(malformedRecords.name, this.onRecord);
  }

  skipped(key: string, error: string, fields: Fields = {}): void {
    if (this.logged.has(key)) return;
    if (this.logged.size >= REMEMBERED) this.logged.clear();
    this.logged.add(key);
    this.log.warning('skipping a malformed record', { key, error, ...fields });
  }

  /** The record reads good now: if it goes bad again, it is logged again. */
  cleared(key: string): void {
    this.logged.delete(key);
  }

  close(): void {
    unsubscribe(malformedRecords.name, this.onRecord);
  }
}
