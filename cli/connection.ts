import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { HostId } from '../schemas/ids.js';

export const DEFAULT_STATE_DIR = '.ptc';

/** Written by `ptctl dev` into its state dir; read by every other command. */
export const ConnectionFile = z.object({
  natsUrl: z.string(),
  natsCreds: z.string().describe('credentials file of the worker (orchestrator) identity'),
  natsOperatorCreds: z.string().optional().describe('credentials file of the dev operator identity (attach, apply, cancel…)'),
  natsViewerCreds: z.string().optional().describe('credentials file of the dev viewer identity (hosts, plan, events)'),
  temporalAddress: z.string(),
  temporalNamespace: z.string(),
  temporalUi: z.string().nullable(),
  pid: z.number().int(),
  hosts: z.array(HostId),
  startedAt: z.string(),
});
export type ConnectionFile = z.infer<typeof ConnectionFile>;

export interface Connection {
  natsUrl: string;
  /** Credentials of the identity this process speaks as (see `NatsClientRole`). */
  natsCreds: string;
  temporalAddress: string;
  temporalNamespace: string;
  temporalUi: string | null;
}

export interface ConnectionFlags {
  dir?: string | undefined;
  natsUrl?: string | undefined;
  natsCreds?: string | undefined;
  temporalAddress?: string | undefined;
  namespace?: string | undefined;
}

/**
 * Which dev-stack identity a command uses when no credentials are given: the worker for the worker
 * and the demo, the operator for commands that change things through Temporal, the viewer for reads.
 */
export type NatsClientRole = 'worker' | 'operator' | 'viewer';

export const connectionFilePath = (dir: string): string => join(resolve(dir), 'connection.json');

export async function readConnectionFile(dir: string): Promise<ConnectionFile | null> {
  let text: string;
  try {
    text = await readFile(connectionFilePath(dir), 'utf8');
  } catch {
    return null;
  }
  const parsed = ConnectionFile.safeParse(JSON.parse(text));
  return parsed.success ? parsed.data : null;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Each setting from its flag, then its environment variable, then the dev stack's connection file. */
export async function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env, role: NatsClientRole = 'worker'): Promise<Connection> {
  const dir = flags.dir ?? DEFAULT_STATE_DIR;
  // An empty variable counts as unset, as in most shells' `${VAR:-default}`.
  const fromEnvVar = (name: string): string | undefined => (env[name] ? env[name] : undefined);
  const fromEnv = {
    natsUrl: flags.natsUrl ?? fromEnvVar('PTC_NATS_URL'),
    natsCreds: flags.natsCreds ?? fromEnvVar('PTC_NATS_CREDS'),
    temporalAddress: flags.temporalAddress ?? fromEnvVar('PTC_TEMPORAL_ADDRESS'),
    temporalNamespace: flags.namespace ?? fromEnvVar('PTC_TEMPORAL_NAMESPACE'),
  };
  const needsFile = !fromEnv.natsUrl || !fromEnv.natsCreds || !fromEnv.temporalAddress;
  const file = needsFile ? await readConnectionFile(dir) : null;
  if (needsFile && (file === null || !processAlive(file.pid))) {
    throw new PtcError(
      ErrorCode.NOT_CONNECTED,
      `no running dev stack in ${dir}/: run \`ptctl dev\` first (or pass --dir), or set PTC_NATS_URL, PTC_NATS_CREDS and PTC_TEMPORAL_ADDRESS`,
    );
  }
  return {
    natsUrl: fromEnv.natsUrl ?? file?.natsUrl ?? '',
    natsCreds: fromEnv.natsCreds ?? (file ? credsOfRole(file, role) : ''),
    temporalAddress: fromEnv.temporalAddress ?? file?.temporalAddress ?? '',
    temporalNamespace: fromEnv.temporalNamespace ?? file?.temporalNamespace ?? 'default',
    temporalUi: file?.temporalUi ?? null,
  };
}

function credsOfRole(file: ConnectionFile, role: NatsClientRole): string {
  if (role === 'operator') return file.natsOperatorCreds ?? file.natsCreds;
  if (role === 'viewer') return file.natsViewerCreds ?? file.natsCreds;
  return file.natsCreds;
}

export function connectionEnv(conn: Connection): NodeJS.ProcessEnv {
  return {
    PTC_NATS_URL: conn.natsUrl,
    PTC_NATS_CREDS: conn.natsCreds,
    PTC_TEMPORAL_ADDRESS: conn.temporalAddress,
    PTC_TEMPORAL_NAMESPACE: conn.temporalNamespace,
  };
}
