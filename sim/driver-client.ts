/** A call to one of the Docker driver sockets, as Docker makes it: POST with a JSON body. */
import { request } from 'node:http';

export interface DriverAnswer {
  readonly status: number;
  readonly json: Record<string, unknown>;
  readonly ms: number;
}

export function callDriver(socketPath: string, path: string, body: object | string): Promise<DriverAnswer> {
  const started = Date.now();
  return new Promise((done, fail) => {
    const req = request({ socketPath, path, method: 'POST', headers: { 'Content-Type': 'application/vnd.docker.plugins.v1.2+json' } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        try {
          done({ status: res.statusCode!, json: JSON.parse(text) as Record<string, unknown>, ms: Date.now() - started });
        } catch (err) {
          fail(new Error(`${path} answered ${res.statusCode} with no JSON: ${text.slice(0, 200)} (${(err as Error).message})`));
        }
      });
    });
    req.on('error', fail);
    req.end(typeof body === 'string' ? body : JSON.stringify(body));
  });
}
