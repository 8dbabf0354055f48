/**
 * An HTTP server that reads exactly one request per connection. node's own server parses every
 * request a client pipelines in what it has read (hundreds per chunk), each an object the daemon
 * holds: a client that pipelines and never reads its answers made the daemon hold a gigabyte. Here
 * the connection's bytes are read only up to the end of its first request (headers, then the
 * Content-Length body), and only those reach node's parser, through a stream of their own; nothing
 * after them is ever read. Once the answer is written the connection goes. The request's bytes
 * count against the daemon's budget of unanswered requests until then.
 */
import type { Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { MAX_CONNECTIONS, REQUEST_TIMEOUT_MS, requestBudget } from './request-limits';

const HEADER_END = Buffer.from('\r\n\r\n');

/** The connection as node's HTTP server sees it: what was framed in, answers out to the socket. */
class FramedConnection extends Duplex {
  constructor(private readonly socket: Socket) {
    super();
  }

  override _read(): void {
    // Pushed by the framer.
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.socket.write(chunk, done);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.socket.end(done);
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.socket.destroy();
    done(error);
  }
}

/**
 * How many bytes the request at the start of `buffer` takes, once its headers are all there;
 * undefined until then; 'unframed' for one that frames itself otherwise (chunked).
 */
function requestLength(buffer: Buffer): number | 'unframed' | undefined {
  const end = buffer.indexOf(HEADER_END);
  if (end < 0) return undefined;
  const head = buffer.subarray(0, end).toString('latin1');
  if (/\r\ntransfer-encoding:/i.test(head)) return 'unframed';
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  return end + HEADER_END.length + (length ? Number(length[1]) : 0);
}

/** A listener for `http` (which is not listened on itself) that hands it one request per connection. */
export function oneRequestPerConnection(http: HttpServer, limits: { maxHeaderBytes: number; maxBodyBytes: number }): Server {
  const server = createServer((socket) => {
    const connection = new FramedConnection(socket);
    const most = limits.maxHeaderBytes + limits.maxBodyBytes;
    let buffered: Buffer = Buffer.alloc(0);
    let state: 'reading' | 'passing' | 'framed' = 'reading';
    const deliver = (bytes: Buffer) => {
      requestBudget.add(connection, bytes.length, () => connection.destroy());
      connection.push(bytes);
    };
    socket.on('data', (chunk: Buffer) => {
      if (state === 'framed') return;
      // A request that frames itself otherwise is passed on as it comes (node's limits still
      // apply): Docker always sends Content-Length.
      if (state === 'passing') return deliver(chunk);
      buffered = Buffer.concat([buffered, chunk]);
      const length = requestLength(buffered);
      if (length === 'unframed') {
        state = 'passing';
        return deliver(buffered);
      }
      if (length === undefined) {
        if (buffered.length > limits.maxHeaderBytes) socket.destroy();
        return;
      }
      // A body over the limit is handed on only as far as the limit: the server refuses it (413).
      if (buffered.length < Math.min(length, most)) return;
      state = 'framed';
      clearTimeout(deadline);
      socket.pause();
      deliver(buffered.subarray(0, Math.min(length, most)));
      buffered = Buffer.alloc(0);
    });
    // The whole request must arrive within the deadline (node's own timeouts start only once it has it).
    const deadline = setTimeout(() => socket.destroy(), REQUEST_TIMEOUT_MS);
    socket.on('error', () => connection.destroy());
    socket.on('close', () => {
      clearTimeout(deadline);
      requestBudget.release(connection);
      connection.destroy();
    });
    http.emit('connection', connection);
  });
  server.maxConnections = MAX_CONNECTIONS;
  return server;
}
