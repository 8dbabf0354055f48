/**
 * Every socket we serve bounds what a client may hold: a request must arrive whole within a short
 * time and size, so a slow or unfinished client never keeps a connection (or the daemon's memory).
 */
import type { Server } from 'node:http';

/** Headers must arrive within this. */
export const HEADERS_TIMEOUT_MS = 10_000;
/** The whole request (headers and body) must arrive within this. */
export const REQUEST_TIMEOUT_MS = 15_000;
/** The largest request body we read. */
export const MAX_BODY_BYTES = 1 << 20;
/** An idle kept-alive connection is closed after this. */
const KEEP_ALIVE_MS = 5_000;

export function limitRequests(server: Server): Server {
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.maxHeadersCount = 100;
  return server;
}
