/**
 * Structured logging with levels. Never to stdout: for the CNI plugins stdout is the protocol.
 * Lines go to stderr and, when configured, are appended to a file.
 */
import { appendFileSync, createWriteStream, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type Level = 'debug' | 'info' | 'warning' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warning: 30, error: 40 };

export type Fields = Readonly<Record<string, string | number | boolean | undefined>>;
export type Sink = (line: string) => void;

export class Logger {
  constructor(
    private readonly level: Level,
    /** Where lines go: also handed to loggers made for each request. */
    readonly sinks: readonly Sink[],
    private readonly fields: Fields = {},
  ) {}

  /** The same logger with fields added to every line (container ID, command...). */
  with(fields: Fields): Logger {
    return new Logger(this.level, this.sinks, { ...this.fields, ...fields });
  }

  debug(message: string, fields?: Fields): void {
    this.log('debug', message, fields);
  }

  info(message: string, fields?: Fields): void {
    this.log('info', message, fields);
  }

  warning(message: string, fields?: Fields): void {
    this.log('warning', message, fields);
  }

  error(message: string, fields?: Fields): void {
    this.log('error', message, fields);
  }

  private log(level: Level, message: string, fields?: Fields): void {
    if (RANK[level] < RANK[this.level]) return;
    const all = { ...this.fields, ...fields };
    const pairs = Object.entries(all)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${escapeControls(k)}=${typeof v === 'string' && /[\s"=\p{Cc}\u2028\u2029]/u.test(v) ? escapeControls(JSON.stringify(v)) : v}`);
    const line = `${new Date().toISOString()} [${level.toUpperCase()}][${process.pid}] ${escapeControls(message)}${pairs.length ? ` ${pairs.join(' ')}` : ''}\n`;
    for (const sink of this.sinks) sink(line);
  }
}

/** Control characters as escapes: no input (a container ID with a newline) can start a log line of its own. */
function escapeControls(text: string): string {
  return text.replace(/[\p{Cc}\u2028\u2029]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** stderr as node gives it: a write that blocks until a pipe's reader takes it (fine for a short-lived plugin). */
export const stderrSink: Sink = (line) => {
  process.stderr.write(line);
};

/** Lines kept for a reader that falls behind; beyond it lines are dropped, and counted. */
const BACKLOG_LINES = 10_000;

/**
 * stderr for a long-lived process (the node daemon): written by the thread pool, in order, so a
 * slow reader of the pipe (a busy journald) never stops the event loop; a reader that falls far
 * behind loses lines (a count of them is written when it catches up) rather than memory.
 * `flush()` waits for what is queued (before exiting).
 */
export function asyncStderrSink(): Sink & { flush(): Promise<void> } {
  const stream = createWriteStream('', { fd: 2, autoClose: false });
  stream.on('error', () => undefined);
  let queued = 0;
  let dropped = 0;
  const sink = (line: string) => {
    if (queued >= BACKLOG_LINES) {
      dropped++;
      return;
    }
    if (dropped > 0) {
      queued++;
      stream.write(`${dropped} log lines dropped: stderr was not read fast enough\n`, () => queued--);
      dropped = 0;
    }
    queued++;
    stream.write(line, () => queued--);
  };
  return Object.assign(sink, { flush: () => new Promise<void>((resolve) => (queued === 0 ? resolve() : stream.write('', () => resolve()))) });
}

/** Appends to a file, creating its directory; if the file cannot be written, says so once on stderr. */
export function fileSink(path: string): Sink {
  let broken = false;
  let made = false;
  return (line) => {
    if (broken) return;
    try {
      if (!made) {
        mkdirSync(dirname(path), { recursive: true });
        made = true;
      }
      appendFileSync(path, line);
    } catch (err) {
      broken = true;
      process.stderr.write(`cannot write log file ${path}: ${(err as Error).message}\n`);
    }
  };
}

export const silentLogger = new Logger('error', []);
