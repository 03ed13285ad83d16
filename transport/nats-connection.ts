import { readFile } from 'node:fs/promises';
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, PtcError } from '../schemas/errors.js';

export interface NatsSettings {
  /** Comma-separated server URLs. */
  servers: string;
  /** File holding the identity's nkey seed (`SU…`). There is no anonymous access in any mode. */
  seedFile: string;
  /** Client name shown in the server's monitoring. */
  name: string;
  /**
   * Prefix for reply inboxes. A host identity may only subscribe to its own inboxes, so each agent
   * uses `_INBOX_<hostId>` and the server can enforce that it never reads another host's replies.
   */
  inboxPrefix?: string;
  /** Keep reconnecting forever (agents, workers) or give up quickly (one-shot CLI commands). */
  reconnectForever?: boolean;
}

export async function connectNats(settings: NatsSettings): Promise<NatsConnection> {
  let seed: string;
  try {
    seed = (await readFile(settings.seedFile, 'utf8')).trim();
  } catch (err) {
    throw new PtcError(ErrorCode.NOT_CONNECTED, `cannot read the NATS credentials file ${settings.seedFile}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await connect({
      servers: settings.servers.split(',').map((s) => s.trim()),
      name: settings.name,
      authenticator: nkeyAuthenticator(new TextEncoder().encode(seed)),
      ...(settings.inboxPrefix ? { inboxPrefix: settings.inboxPrefix } : {}),
      maxReconnectAttempts: settings.reconnectForever ? -1 : 10,
      // A daemon keeps trying its first connection too (a slow host can overrun the server's auth timeout).
      waitOnFirstConnect: settings.reconnectForever === true,
      reconnectTimeWait: 500,
      timeout: 5000,
    });
  } catch (err) {
    throw new PtcError(
      ErrorCode.NOT_CONNECTED,
      `cannot connect to NATS at ${settings.servers} as ${settings.name}: ${(err as Error).message}; is \`ptctl dev\` running, or is PTC_NATS_URL right?`,
      { cause: err },
    );
  }
}

export const hostInboxPrefix = (hostId: string): string => `_INBOX_${hostId}`;
