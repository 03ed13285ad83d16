import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ErrorCode, PtcError } from '../schemas/errors.js';

/** The Prometheus text format content type (prom-client's `Registry.contentType` is the same). */
const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** One exposition to concatenate into /metrics: a prom-client registry, or another process's endpoint. */
export type MetricsSource = () => Promise<string>;

export interface MetricsEndpoint {
  /** `http://host:port/metrics` */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Parses a listen address: `host:port`, `:port` or `port`. The host defaults to loopback, because
 * metrics name hosts and devices and should not be on the network unless someone asks for it.
 */
export function parseListenAddress(addr: string, flag = '--metrics'): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-f:]+\]|[a-z0-9.-]*):)?(\d{1,5})$/i.exec(addr.trim());
  const port = Number(m?.[2]);
  if (!m || !Number.isInteger(port) || port > 65535) throw new PtcError(ErrorCode.INVALID_INPUT, `${flag}: "${addr}" is not an address like 127.0.0.1:9464, :9464 or 9464`);
  const host = m[1] ? m[1].replace(/^\[|\]$/g, '') : '127.0.0.1';
  return { host, port };
}

/**
 * Serves GET /metrics as the concatenation of its sources (metric names must not repeat across them:
 * ptctl's are `ptc_*`, the Temporal SDK's `temporal_*`). A failing source is reported as a comment and
 * the others are still served, so one broken exporter does not blind the dashboard.
 */
export async function serveMetrics(addr: string, sources: readonly MetricsSource[]): Promise<MetricsEndpoint> {
  const { host, port } = parseListenAddress(addr);
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    void Promise.all(sources.map((s) => s().catch((err: unknown) => `# source failed: ${String((err as Error).message ?? err).replace(/\n/g, ' ')}\n`))).then((parts) => {
      res.writeHead(200, { 'content-type': CONTENT_TYPE }).end(parts.map((p) => (p.endsWith('\n') || p === '' ? p : `${p}\n`)).join(''));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new PtcError(ErrorCode.INVALID_INPUT, `cannot serve metrics on ${host}:${port}: ${err.message}`, { cause: err })));
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${bound}/metrics`,
    host,
    port: bound,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A source that reads another endpoint, e.g. the Temporal runtime's own Prometheus exporter. */
export const remoteSource = (url: string): MetricsSource => async () => {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return res.text();
};
