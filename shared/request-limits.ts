/**
 * Every socket we serve bounds what a client may hold: a request must arrive whole within a short
 * time and size, so a slow or unfinished client never keeps a connection (or the daemon's memory).
 */
import type { ServerOptions } from 'node:http';

/** The whole request (headers and body) must arrive within this. */
export const REQUEST_TIMEOUT_MS = 15_000;
/** The largest request body we read. */
export const MAX_BODY_BYTES = 1 << 20;

/**
 * For node's http servers. Node checks the request deadlines only every
 * `connectionsCheckingInterval` (30 s by default): here every second.
 */
export const HTTP_LIMITS: ServerOptions = {
  requestTimeout: REQUEST_TIMEOUT_MS,
  headersTimeout: 10_000,
  connectionsCheckingInterval: 1_000,
  keepAliveTimeout: 5_000,
  maxHeaderSize: 16 << 10,
};
