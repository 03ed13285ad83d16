import { readFile } from 'node:fs/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { identityOfCredsFile, inboxPrefixOf } from './nats-permissions.js';
import { seedAuthenticator } from './nkey-auth.js';

export interface NatsSettings {
  /** Comma-separated server URLs. */
  servers: string;
  /**
   * The identity's credentials: a `.creds` file (user JWT + seed, decentralized auth) or a bare nkey
   * seed (`SU…`). There is no anonymous access in any mode.
   */
  seedFile: string;
  /** TLS to nats-server: its CA, and this client's certificate and key for mutual TLS. */
  tls?: NatsTls | undefined;
  /** Client name shown in the server's monitoring. */
  name: string;
  /**
   * Prefix for reply inboxes. Every identity may only subscribe to its own inboxes (agents use
   * `_INBOX_<hostId>`), so the server can enforce that nobody reads another's replies. Default: the
   * prefix of the identity the credentials file is named after.
   */
  inboxPrefix?: string;
  /** Keep reconnecting forever (agents, workers) or give up quickly (one-shot CLI commands). */
  reconnectForever?: boolean;
}

export interface NatsTls {
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
}

const CREDS_MARKER = '-----BEGIN NATS USER JWT-----';

/** The user name inside a `.creds` file's JWT (ptctl names users after their identity). */
export function credsIdentityName(text: string): string | null {
  const jwt = text.split(CREDS_MARKER)[1]?.trim().split(/\s/)[0];
  const payload = jwt?.split('.')[1];
  if (!payload) return null;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { name?: unknown };
    return typeof claims.name === 'string' ? claims.name : null;
  } catch {
    return null;
  }
}

export async function connectNats(settings: NatsSettings): Promise<NatsConnection> {
  let seed: string;
  try {
    // Not trimmed: the .creds parser needs the newline after the last END line.
    seed = await readFile(settings.seedFile, 'utf8');
  } catch (err) {
    throw new PtcError(ErrorCode.NOT_CONNECTED, `cannot read the NATS credentials file ${settings.seedFile}: ${(err as Error).message}`, { cause: err });
  }
  const isCreds = seed.includes(CREDS_MARKER);
  const who = identityOfCredsFile(isCreds ? `${credsIdentityName(seed) ?? ''}.creds` : settings.seedFile);
  const inboxPrefix = settings.inboxPrefix ?? (who ? inboxPrefixOf(who.role, who.name) : undefined);
  try {
    return await connect({
      servers: settings.servers.split(',').map((s) => s.trim()),
      name: settings.name,
      authenticator: seedAuthenticator(seed),
      ...(settings.tls ? { tls: { ...settings.tls } } : {}),
      ...(inboxPrefix ? { inboxPrefix } : {}),
      maxReconnectAttempts: settings.reconnectForever ? -1 : 10,
      // A daemon keeps trying its first connection too (a slow host can overrun the server's auth timeout).
      waitOnFirstConnect: settings.reconnectForever === true,
      reconnectTimeWait: 500,
      timeout: 5000,
      // Otherwise every request and JetStream publish builds an Error up front for the stack a later
      // failure might show (RequestError, TimeoutError: 1% of the agents' CPU in the bench's profile);
      // our errors name their subject and operation instead.
      noAsyncTraces: true,
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
