/**
 * Structured logging with levels. Never to stdout: for the CNI plugins stdout is the protocol.
 * Lines go to stderr and, when configured, are appended to a file.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type Level = 'debug' | 'info' | 'warning' | 'error';
const RANK: Record<Level, number> = { debug: 10, info: 20, warning: 30, error: 40 };

export type Fields = Readonly<Record<string, string | number | boolean | undefined>>;
export type Sink = (line: string) => void;

export class Logger {
  constructor(
    private readonly level: Level,
    private readonly sinks: readonly Sink[],
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

export const stderrSink: Sink = (line) => {
  process.stderr.write(line);
};

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
