/**
 * Every socket we serve bounds what a client may hold: a request must arrive whole within a short
 * time and size, so a slow or unfinished client never keeps a connection (or the daemon's memory);
 * connections per socket are capped, every socket answers one request per connection (a pipelined
 * request is never read before the previous answer is written), and all the daemon's sockets
 * together hold at most REQUEST_BUDGET_BYTES of unanswered requests.
 */
import type { ServerOptions } from 'node:http';
import { RequestBudget } from './request-budget';

/** The whole request (headers and body) must arrive within this. */
export const REQUEST_TIMEOUT_MS = 15_000;
/** The largest request we read on the CNI socket (a forwarded invocation: its environment and stdin). */
export const MAX_BODY_BYTES = 1 << 20;
/** The largest body of a Docker driver call (Docker's calls are a few hundred bytes). */
export const MAX_DRIVER_BODY_BYTES = 64 << 10;
/** Connections a socket holds at once; more wait in the kernel's backlog, or are refused. */
export const MAX_CONNECTIONS = 2048;
/** Bytes of unanswered requests all the daemon's sockets hold together. */
export const REQUEST_BUDGET_BYTES = 32 << 20;
export const requestBudget = new RequestBudget(REQUEST_BUDGET_BYTES);

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

/**
 * One request per connection: the answer says `Connection: close` and the connection is closed once
 * it is written; a request pipelined after it is never handled (node answers 503 to what it
 * already parsed, and that goes with the connection), so a client that never reads its answers
 * cannot make the daemon work for it or keep its answers. (Docker opens a connection per call.)
 */
export const REQUESTS_PER_CONNECTION = 1;
