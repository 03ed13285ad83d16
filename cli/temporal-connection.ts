import type { TLSConfig } from '@temporalio/client';
import { readFile } from 'node:fs/promises';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import type { Connection } from './connection.js';

// How to reach Temporal, apart from clients.ts (which also opens NATS and reads inventories) so that
// the SDK client, the worker and the CLI's own reader (workflow-reader.ts) load only this.

/** TLS/mTLS and API key settings for a Temporal connection (client or worker), files read now. */
export async function temporalConnectOptions(conn: Connection): Promise<{ address: string; tls?: TLSConfig; apiKey?: string }> {
  const read = async (file: string | undefined, what: string): Promise<Buffer | undefined> => {
    if (!file) return undefined;
    try {
      return await readFile(file);
    } catch (err) {
      throw new PtcError(ErrorCode.NOT_CONNECTED, `cannot read the Temporal ${what} ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const t = conn.temporalTls;
  let tls: TLSConfig | undefined;
  if (t) {
    const ca = await read(t.caFile, 'CA file');
    const crt = await read(t.certFile, 'client certificate');
    const key = await read(t.keyFile, 'client key');
    if ((crt === undefined) !== (key === undefined)) throw new PtcError(ErrorCode.INVALID_INPUT, 'Temporal mTLS needs both a client certificate and its key (--temporal-cert and --temporal-key)');
    tls = { ...(ca ? { serverRootCACertificate: ca } : {}), ...(crt && key ? { clientCertPair: { crt, key } } : {}), ...(t.serverName ? { serverNameOverride: t.serverName } : {}) };
  }
  return { address: conn.temporalAddress, ...(tls ? { tls } : {}), ...(conn.temporalApiKey ? { apiKey: conn.temporalApiKey } : {}) };
}

export const workflowUiLink = (conn: Connection, workflowId: string): string | null =>
  conn.temporalUi ? `${conn.temporalUi}/namespaces/${encodeURIComponent(conn.temporalNamespace)}/workflows/${encodeURIComponent(workflowId)}` : null;
