/**
 * Serves one Docker plugin API (NetworkDriver or IpamDriver) with express on a unix socket:
 * POST /<Interface>.<Call> with a JSON body; errors as a non-200 status with {"Err": "..."};
 * unknown paths 404.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import { createServer, type Server as HttpServer } from 'node:http';
import type { Server } from 'node:net';
import { CalicoError, messageOf } from '../shared/errors';
import { checkJsonDepth } from '../shared/json';
import type { Logger } from '../shared/log';
import { oneRequestPerConnection } from '../shared/one-request-server';
import { HTTP_LIMITS, MAX_DRIVER_BODY_BYTES, REQUESTS_PER_CONNECTION, REQUEST_TIMEOUT_MS } from '../shared/request-limits';
import { listenOnSocket, removeSocket } from '../shared/unix-socket';
import { CONTENT_TYPE } from './protocol';

export type Handler = (body: Record<string, unknown>) => unknown;

/** Told of every call served: its name, whether it succeeded, and how long it took. */
export type CallObserver = (call: string, ok: boolean, seconds: number) => void;

export function driverApp(implementsApi: string, handlers: Readonly<Record<string, Handler>>, log: Logger, observe: CallObserver = () => undefined): express.Express {
  const app = express();
  app.disable('x-powered-by');
  // node's own request timeout ends when the headers are in: the body gets the same deadline here.
  app.use((req: Request, res: Response, next: NextFunction) => {
    const timer = setTimeout(() => req.destroy(), REQUEST_TIMEOUT_MS);
    const done = () => clearTimeout(timer);
    req.once('end', done);
    req.once('close', done);
    // One request per connection (shared/one-request-server.ts): written, the connection goes.
    res.once('finish', () => req.socket.destroy());
    next();
  });
  // Docker sends application/vnd.docker.plugins.v1.2+json (or nothing): parse any body as JSON,
  // its nesting bounded (a refusal is a 400 with the reason, as any malformed body).
  app.use(express.json({ type: () => true, limit: MAX_DRIVER_BODY_BYTES, strict: false, verify: (_req, _res, buffer) => checkJsonDepth(buffer.toString('utf8'), 'request body') }));
  const send = (res: Response, status: number, body: unknown) => res.status(status).type(CONTENT_TYPE).send(JSON.stringify(body));

  app.post('/Plugin.Activate', (_req, res) => send(res, 200, { Implements: [implementsApi] }));
  for (const [call, handler] of Object.entries(handlers)) {
    app.post(`/${call}`, async (req: Request, res: Response) => {
      const body = req.body === null || req.body === undefined || typeof req.body !== 'object' || Array.isArray(req.body) ? {} : (req.body as Record<string, unknown>);
      log.debug('call', { call });
      const started = process.hrtime.bigint();
      const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
      try {
        send(res, 200, await handler(body));
        observe(call, true, seconds());
      } catch (err) {
        const message = messageOf(err);
        log[err instanceof CalicoError ? 'warning' : 'error'](`${call} failed`, { error: message });
        send(res, 500, { Err: message });
        observe(call, false, seconds());
      }
    });
  }
  app.use((req: Request, res: Response) => send(res, 404, { Err: `${implementsApi} has no call ${req.method} ${req.path}` }));
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    send(res, 400, { Err: `malformed request body: ${messageOf(err)}` });
  });
  return app;
}

export class DriverServer {
  private readonly http: HttpServer;
  /** What listens: it hands the HTTP server one request per connection. */
  private readonly listener: Server;

  constructor(
    app: express.Express,
    private readonly socketPath: string,
  ) {
    this.http = createServer(HTTP_LIMITS, app);
    this.http.maxRequestsPerSocket = REQUESTS_PER_CONNECTION;
    this.listener = oneRequestPerConnection(this.http, { maxHeaderBytes: HTTP_LIMITS.maxHeaderSize!, maxBodyBytes: MAX_DRIVER_BODY_BYTES });
  }

  async start(): Promise<void> {
    await listenOnSocket(this.listener, this.socketPath);
  }

  /** Stops accepting, lets requests in flight finish, removes the socket. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.listener.close(() => resolve()));
    this.http.closeIdleConnections();
    await closed;
    removeSocket(this.socketPath);
  }
}
