/**
 * Runs the dataplane's commands (ip, bridge, nft), each with its input on stdin.
 *
 * Node starts a process by forking itself, on the event loop, at a cost that grows with the
 * process's memory (measured: 1.1 ms at 50 MB, 3.5 ms at 110 MB, 7.8 ms at 170 MB of RSS). A
 * short-lived plugin pays little; the node daemon, larger and serving many commands at once, would
 * stall every request on each fork. So the daemon turns on a helper (useCommandHelper): a small
 * node process of its own, which starts the commands for it, forking cheaply and on its own loop.
 * The helper's protocol is one JSON line per command each way; it exits when its stdin closes, so
 * it never outlives the daemon. Should it die, the commands it held fail and the next starts another.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';

export interface CommandOptions {
  readonly timeoutMs: number;
  readonly maxBuffer: number;
}

export interface CommandOutput {
  readonly stdout: string;
  readonly stderr: string;
}

/** A command that could not start, exited non-zero or ran out of time. */
export class CommandFailure extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** The helper, as `node -e` runs it. Plain JavaScript: it is compiled by node, not by us. */
const HELPER_SOURCE = `
const { execFile } = require('node:child_process');
const started = new Map();
let pending = [];
const answer = (line) => process.stdout.write(line + '\\n');
// A line with a file starts a command; a line with only its id and input gives it its stdin.
const run = (r) => {
  if (r.file === undefined) {
    const child = started.get(r.id);
    started.delete(r.id);
    if (child) child.stdin.end(r.input);
    return;
  }
  const child = execFile(r.file, r.args, { timeout: r.timeoutMs, maxBuffer: r.maxBuffer }, (err, stdout, stderr) =>
    answer(JSON.stringify({ id: r.id, failed: err ? err.message : null, stdout, stderr })));
  child.stdin.on('error', () => undefined);
  started.set(r.id, child);
};
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  for (let at = chunk.indexOf('\\n'); at >= 0; at = chunk.indexOf('\\n')) {
    run(JSON.parse(pending.join('') + chunk.slice(0, at)));
    pending = [];
    chunk = chunk.slice(at + 1);
  }
  if (chunk) pending.push(chunk);
});
process.stdin.on('end', () => process.exit(0));
`;

/** Beyond a command's own timeout, which the helper enforces: the helper itself is stuck. */
const HELPER_GRACE_MS = 5_000;

interface Waiting {
  resolve(output: CommandOutput): void;
  reject(err: CommandFailure): void;
  timer: NodeJS.Timeout;
}

class CommandHelper {
  private child: ChildProcess | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private partial: string[] = [];

  start(file: string, args: readonly string[], options: CommandOptions): StartedCommand {
    const child = this.child ?? this.spawnHelper();
    const id = this.nextId++;
    const output = new Promise<CommandOutput>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(id, 'the command helper did not answer in time'), options.timeoutMs + HELPER_GRACE_MS);
      this.waiting.set(id, { resolve, reject, timer });
      child.stdin!.write(`${JSON.stringify({ id, file, args, ...options })}\n`);
    });
    return startedCommand(output, (input) => child.stdin!.write(`${JSON.stringify({ id, input })}\n`));
  }

  stop(): void {
    this.child?.stdin!.end();
    this.child = undefined;
  }

  private spawnHelper(): ChildProcess {
    const child = spawn(process.execPath, ['-e', HELPER_SOURCE], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child = child;
    this.partial = [];
    child.stdin!.on('error', () => undefined);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => this.received(chunk));
    child.once('exit', () => {
      if (this.child === child) this.child = undefined;
      for (const id of [...this.waiting.keys()]) this.fail(id, 'the command helper exited before answering');
    });
    return child;
  }

  private received(chunk: string): void {
    for (let at = chunk.indexOf('\n'); at >= 0; at = chunk.indexOf('\n')) {
      const line = this.partial.join('') + chunk.slice(0, at);
      this.partial = [];
      chunk = chunk.slice(at + 1);
      const answer = JSON.parse(line) as { id: number; failed: string | null; stdout: string; stderr: string };
      const waiting = this.waiting.get(answer.id);
      if (!waiting) continue;
      this.waiting.delete(answer.id);
      clearTimeout(waiting.timer);
      if (answer.failed === null) waiting.resolve({ stdout: answer.stdout, stderr: answer.stderr });
      else waiting.reject(new CommandFailure(answer.failed, answer.stderr));
    }
    if (chunk) this.partial.push(chunk);
  }

  private fail(id: number, why: string): void {
    const waiting = this.waiting.get(id);
    if (!waiting) return;
    this.waiting.delete(id);
    clearTimeout(waiting.timer);
    waiting.reject(new CommandFailure(why, ''));
  }
}

let helper: CommandHelper | undefined;

/** From now on, this process's commands start in a helper process (for the long-running daemon). */
export function useCommandHelper(): void {
  helper ??= new CommandHelper();
}

/** Lets the helper go: it exits once its stdin closes. */
export function stopCommandHelper(): void {
  helper?.stop();
  helper = undefined;
}

/** A command started ahead of its input: it runs once given its stdin, which is then closed. */
export interface StartedCommand {
  /** Gives the command its whole stdin (once); its output, or a CommandFailure. */
  finish(input: string): Promise<CommandOutput>;
  /** It has exited (or failed) already. */
  readonly ended: boolean;
  /** Settles once it has exited, whether or not it succeeded. */
  readonly exited: Promise<void>;
}

function startedCommand(output: Promise<CommandOutput>, give: (input: string) => void): StartedCommand {
  let ended = false;
  // A command that fails before it is given its input is reported by finish, never unhandled.
  const exited = output.then(() => void (ended = true), () => void (ended = true));
  let given = false;
  return {
    finish(input) {
      if (!given) give(input);
      given = true;
      return output;
    },
    get ended() {
      return ended;
    },
    exited,
  };
}

/**
 * Starts `file` with `args` now and gives it its stdin later: the milliseconds a process takes to
 * start (and, through nsenter, to enter a namespace) pass while its input is still being worked out.
 */
export function startCommand(file: string, args: readonly string[], options: CommandOptions): StartedCommand {
  if (helper) return helper.start(file, args, options);
  let child: ChildProcess | undefined;
  const output = new Promise<CommandOutput>((resolve, reject) => {
    child = execFile(file, args, { timeout: options.timeoutMs, maxBuffer: options.maxBuffer }, (err, stdout, stderr) => {
      if (err) reject(new CommandFailure(err.message, stderr));
      else resolve({ stdout, stderr });
    });
    child.stdin!.on('error', () => undefined);
  });
  return startedCommand(output, (input) => child!.stdin!.end(input));
}

/** Runs `file` with `args` and `input` on its stdin; rejects with a CommandFailure. */
export function runCommand(file: string, args: readonly string[], input: string, options: CommandOptions): Promise<CommandOutput> {
  return startCommand(file, args, options).finish(input);
}
