/**
 * Reading a pipe to its end and one request-answer exchange over a unix socket, on node's own
 * stream handles (the bindings `net` is built on), for the plugin process only. A CNI plugin is a
 * process per command, and loading and starting `net` with its streams costs about 10 ms of CPU,
 * a third of node's own start-up, on every command (measured: an ADD forwarded through `net` 37 ms
 * of CPU, this way 27 ms, `node -e 0` 23 ms).
 *
 * The bindings are node's internals and have changed between major versions (a pipe's connect
 * took a third argument once), and a wrong call may abort the process rather than throw. So they
 * are used only on the majors our tests run on; anywhere else `rawStreams()` answers undefined and
 * callers use the public modules.
 */

const VERIFIED_NODE_MAJORS: ReadonlySet<number> = new Set([20]);

/** libuv's end-of-stream code: any other negative read is an error. */
const UV_EOF = -4095;

interface PipeHandle {
  open(fd: number): number;
  connect(request: Completion, path: string): number;
  readStart(): number;
  readStop(): number;
  writeUtf8String(request: Completion, text: string): number;
  shutdown(request: Completion): number;
  close(): void;
  /** Called by the handle for each read: the bytes' buffer, their count and offset in the shared state. */
  onread?: (buffer: ArrayBuffer | undefined) => void;
}

interface Completion {
  handle?: PipeHandle;
  oncomplete?: (status: number) => void;
}

interface Bindings {
  readonly Pipe: new (type: number) => PipeHandle;
  readonly PipeConnectWrap: new () => Completion;
  readonly WriteWrap: new () => Completion;
  readonly ShutdownWrap: new () => Completion;
  readonly socketType: number;
  /** Where a read's byte count (or error) and its offset in the buffer are left. */
  readonly state: Int32Array;
  readonly readBytesIndex: number;
  readonly offsetIndex: number;
}

export interface PipeRead {
  readonly data: Buffer;
  /** False when the writer had not closed its end within the time given. */
  readonly complete: boolean;
}

export interface RawStreams {
  /** What `fd` (a pipe or socket) gives until its writer closes it, or until `timeoutMs` passes. */
  readToEnd(fd: number, timeoutMs: number): Promise<PipeRead>;
  /**
   * Connects to the unix socket at `path`, sends `request`, ends its side and returns the whole
   * answer; undefined when the socket fails, or no connection (or no whole answer) came in time.
   */
  exchange(path: string, request: string, timeouts: { connectMs: number; answerMs: number }): Promise<Buffer | undefined>;
}

let loaded: RawStreams | null | undefined;

/** The raw streams when this node's bindings are the ones verified, else undefined. */
export function rawStreams(): RawStreams | undefined {
  if (loaded === undefined) {
    const bindings = loadBindings();
    loaded = bindings ? streamsOn(bindings) : null;
  }
  return loaded ?? undefined;
}

function loadBindings(): Bindings | undefined {
  if (!VERIFIED_NODE_MAJORS.has(Number(process.versions.node.split('.')[0]))) return undefined;
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const pipe = binding('pipe_wrap');
    const stream = binding('stream_wrap');
    const constants = pipe.constants as Record<string, unknown> | undefined;
    const functions = [pipe.Pipe, pipe.PipeConnectWrap, stream.WriteWrap, stream.ShutdownWrap];
    if (functions.some((f) => typeof f !== 'function')) return undefined;
    if (typeof constants?.SOCKET !== 'number' || !(stream.streamBaseState instanceof Int32Array)) return undefined;
    if (typeof stream.kReadBytesOrError !== 'number' || typeof stream.kArrayBufferOffset !== 'number') return undefined;
    return {
      Pipe: pipe.Pipe as Bindings['Pipe'],
      PipeConnectWrap: pipe.PipeConnectWrap as Bindings['PipeConnectWrap'],
      WriteWrap: stream.WriteWrap as Bindings['WriteWrap'],
      ShutdownWrap: stream.ShutdownWrap as Bindings['ShutdownWrap'],
      socketType: constants.SOCKET,
      state: stream.streamBaseState,
      readBytesIndex: stream.kReadBytesOrError,
      offsetIndex: stream.kArrayBufferOffset,
    };
  } catch {
    return undefined;
  }
}

function streamsOn(b: Bindings): RawStreams {
  /** Reads until the end, an error or the deadline, then closes the handle. */
  const readToEnd = (handle: PipeHandle, timeoutMs: number): Promise<PipeRead> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let done = false;
      const finish = (complete: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        handle.readStop();
        handle.close();
        resolve({ data: Buffer.concat(chunks), complete });
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      handle.onread = (buffer) => {
        const count = b.state[b.readBytesIndex]!;
        // Each read comes in a buffer of its own: keeping a view of it is safe.
        if (count > 0 && buffer) chunks.push(Buffer.from(buffer, b.state[b.offsetIndex]!, count));
        else if (count < 0) finish(count === UV_EOF);
      };
      if (handle.readStart() < 0) finish(false);
    });

  return {
    readToEnd(fd, timeoutMs) {
      const handle = new b.Pipe(b.socketType);
      if (handle.open(fd) < 0) {
        handle.close();
        return Promise.resolve({ data: Buffer.alloc(0), complete: false });
      }
      return readToEnd(handle, timeoutMs);
    },

    exchange(path, request, { connectMs, answerMs }) {
      return new Promise((resolve) => {
        const handle = new b.Pipe(b.socketType);
        let settled = false;
        const fail = () => {
          if (settled) return;
          settled = true;
          clearTimeout(connectTimer);
          handle.close();
          resolve(undefined);
        };
        const connectTimer = setTimeout(fail, connectMs);
        const connecting = new b.PipeConnectWrap();
        connecting.oncomplete = (status) => {
          clearTimeout(connectTimer);
          if (settled) return;
          if (status < 0) return fail();
          // Completions are called only for writes that could not finish at once: a failure
          // after that also ends the read below with an error.
          const write = new b.WriteWrap();
          write.handle = handle;
          write.oncomplete = () => undefined;
          const shutdown = new b.ShutdownWrap();
          shutdown.handle = handle;
          shutdown.oncomplete = () => undefined;
          if (handle.writeUtf8String(write, request) < 0 || handle.shutdown(shutdown) < 0) return fail();
          settled = true;
          void readToEnd(handle, answerMs).then(({ data, complete }) => resolve(complete ? data : undefined));
        };
        if (handle.connect(connecting, path) < 0) fail();
      });
    },
  };
}
