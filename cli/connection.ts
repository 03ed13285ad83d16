import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { ErrorCode, PtcError, describeZodError } from '../schemas/errors.js';
import { HostId } from '../schemas/ids.js';

export const DEFAULT_STATE_DIR = '.ptc';
/** Where `ptctl creds` keeps the operator, the accounts and the identities. */
export const DEFAULT_CREDS_DIR = join(DEFAULT_STATE_DIR, 'creds');

export const NatsTlsFiles = z
  .object({
    caFile: z.string().optional().describe('CA that signed the NATS servers\' certificates (PEM); default: the system roots'),
    certFile: z.string().optional().describe('this client\'s certificate (PEM), for mutual TLS'),
    keyFile: z.string().optional().describe('this client\'s private key (PEM), for mutual TLS'),
  })
  .strict();
export type NatsTlsFiles = z.infer<typeof NatsTlsFiles>;

export const TemporalTlsFiles = z
  .object({
    caFile: z.string().optional().describe('CA of the Temporal frontend (PEM); default: the system roots (Temporal Cloud)'),
    certFile: z.string().optional().describe('client certificate (PEM), for mTLS (e.g. a Temporal Cloud namespace with CA auth)'),
    keyFile: z.string().optional().describe('client private key (PEM), for mTLS'),
    serverName: z.string().optional().describe('TLS server name to verify, when it differs from the address\'s host'),
  })
  .strict();
export type TemporalTlsFiles = z.infer<typeof TemporalTlsFiles>;

/** Written by `ptctl dev` into its state dir; read by every other command. */
export const ConnectionFile = z.object({
  natsUrl: z.string(),
  natsCreds: z.string().describe('credentials file of the worker (orchestrator) identity'),
  natsOperatorCreds: z.string().optional().describe('credentials file of the dev operator identity (attach, apply, cancel…)'),
  natsViewerCreds: z.string().optional().describe('credentials file of the dev viewer identity (hosts, plan, events)'),
  temporalAddress: z.string(),
  temporalNamespace: z.string(),
  temporalUi: z.string().nullable(),
  natsTls: NatsTlsFiles.optional().describe('set when the stack runs with --tls'),
  temporalTls: TemporalTlsFiles.optional().describe('set when the stack runs with --tls'),
  pid: z.number().int(),
  hosts: z.array(HostId),
  startedAt: z.string(),
  /** Prometheus endpoints of the stack's worker and simulated agents (files of older stacks lack it). */
  metrics: z.object({ worker: z.string().nullable(), agents: z.string().nullable() }).optional(),
});
export type ConnectionFile = z.infer<typeof ConnectionFile>;

export interface Connection {
  natsUrl: string;
  /** Credentials of the identity this process speaks as (see `NatsClientRole`). */
  natsCreds: string;
  temporalAddress: string;
  temporalNamespace: string;
  temporalUi: string | null;
  /** TLS to NATS (with a `tls://` URL); unset: plain TCP. */
  natsTls?: NatsTlsFiles | undefined;
  /** TLS to Temporal; unset: plain TCP. An empty object means TLS with the system's roots. */
  temporalTls?: TemporalTlsFiles | undefined;
  /** Temporal Cloud API key (from PTC_TEMPORAL_API_KEY or --temporal-api-key-file; never a flag value). */
  temporalApiKey?: string | undefined;
}

export interface ConnectionFlags {
  dir?: string | undefined;
  /** Connection settings file (YAML/JSON, schema `ClientConfig`). */
  config?: string | undefined;
  natsUrl?: string | undefined;
  natsCreds?: string | undefined;
  temporalAddress?: string | undefined;
  namespace?: string | undefined;
  natsCa?: string | undefined;
  natsCert?: string | undefined;
  natsKey?: string | undefined;
  temporalTls?: boolean | undefined;
  temporalCa?: string | undefined;
  temporalCert?: string | undefined;
  temporalKey?: string | undefined;
  temporalServerName?: string | undefined;
  temporalApiKeyFile?: string | undefined;
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
/**
 * The connection settings file (`--config FILE` or `PTC_CONFIG`, YAML or JSON), for a real fleet:
 * what the flags and env give, in one reviewed place. Flags win over env, env over this file, and the
 * file over a running dev stack's state dir. Secrets stay in their own files; this one only names them.
 */
export const ClientConfig = z
  .object({
    nats: z
      .object({
        url: z.string().optional().describe('comma-separated server URLs, e.g. tls://nats-1:4222,tls://nats-2:4222'),
        creds: z.string().optional().describe('this identity\'s .creds file (from `ptctl creds`)'),
        tls: NatsTlsFiles.optional().describe('TLS to the NATS servers'),
      })
      .strict()
      .optional(),
    temporal: z
      .object({
        address: z.string().optional().describe('Temporal frontend host:port'),
        namespace: z.string().optional().describe('Temporal namespace'),
        tls: z.union([z.boolean(), TemporalTlsFiles]).optional().describe('true: TLS with the system roots; or CA, client certificate and server name'),
        apiKeyFile: z.string().optional().describe('file holding a Temporal Cloud API key'),
      })
      .strict()
      .optional(),
  })
  .strict();
export type ClientConfig = z.infer<typeof ClientConfig>;

export async function readClientConfig(path: string): Promise<ClientConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new PtcError(ErrorCode.INVALID_INPUT, `cannot read the config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new PtcError(ErrorCode.INVALID_INPUT, `${path} is not YAML or JSON: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const parsed = ClientConfig.safeParse(raw ?? {});
  if (!parsed.success) throw new PtcError(ErrorCode.INVALID_INPUT, `${path}: ${describeZodError(parsed.error, 'config')}`);
  return parsed.data;
}

/** Each setting from its flag, then its environment variable, then the config file, then the dev stack's connection file. */
export async function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env, role: NatsClientRole = 'worker'): Promise<Connection> {
  const dir = flags.dir ?? DEFAULT_STATE_DIR;
  // An empty variable counts as unset, as in most shells' `${VAR:-default}`.
  const fromEnvVar = (name: string): string | undefined => (env[name] ? env[name] : undefined);
  const configPath = flags.config ?? fromEnvVar('PTC_CONFIG');
  const cfg: ClientConfig = configPath ? await readClientConfig(configPath) : {};
  const cfgTemporalTls = typeof cfg.temporal?.tls === 'object' ? cfg.temporal.tls : undefined;
  const given = {
    natsUrl: flags.natsUrl ?? fromEnvVar('PTC_NATS_URL') ?? cfg.nats?.url,
    natsCreds: flags.natsCreds ?? fromEnvVar('PTC_NATS_CREDS') ?? cfg.nats?.creds,
    temporalAddress: flags.temporalAddress ?? fromEnvVar('PTC_TEMPORAL_ADDRESS') ?? cfg.temporal?.address,
    temporalNamespace: flags.namespace ?? fromEnvVar('PTC_TEMPORAL_NAMESPACE') ?? cfg.temporal?.namespace,
  };
  const needsFile = !given.natsUrl || !given.natsCreds || !given.temporalAddress;
  const file = needsFile ? await readConnectionFile(dir) : null;
  if (needsFile && (file === null || !processAlive(file.pid))) {
    throw new PtcError(
      ErrorCode.NOT_CONNECTED,
      `no running dev stack in ${dir}/: run \`ptctl dev\` first (or pass --dir), or set PTC_NATS_URL, PTC_NATS_CREDS and PTC_TEMPORAL_ADDRESS (or --config FILE)`,
    );
  }
  const natsTls = dropEmpty({
    caFile: flags.natsCa ?? fromEnvVar('PTC_NATS_CA') ?? cfg.nats?.tls?.caFile,
    certFile: flags.natsCert ?? fromEnvVar('PTC_NATS_CERT') ?? cfg.nats?.tls?.certFile,
    keyFile: flags.natsKey ?? fromEnvVar('PTC_NATS_KEY') ?? cfg.nats?.tls?.keyFile,
  });
  const temporalTls = dropEmpty({
    caFile: flags.temporalCa ?? fromEnvVar('PTC_TEMPORAL_CA') ?? cfgTemporalTls?.caFile,
    certFile: flags.temporalCert ?? fromEnvVar('PTC_TEMPORAL_CERT') ?? cfgTemporalTls?.certFile,
    keyFile: flags.temporalKey ?? fromEnvVar('PTC_TEMPORAL_KEY') ?? cfgTemporalTls?.keyFile,
    serverName: flags.temporalServerName ?? fromEnvVar('PTC_TEMPORAL_SERVER_NAME') ?? cfgTemporalTls?.serverName,
  });
  const envTls = fromEnvVar('PTC_TEMPORAL_TLS');
  const temporalTlsOn = flags.temporalTls === true || envTls === '1' || envTls === 'true' || cfg.temporal?.tls === true || cfgTemporalTls !== undefined;
  let temporalApiKey = fromEnvVar('PTC_TEMPORAL_API_KEY');
  const apiKeyFile = flags.temporalApiKeyFile ?? (temporalApiKey ? undefined : cfg.temporal?.apiKeyFile);
  if (apiKeyFile) {
    try {
      temporalApiKey = (await readFile(apiKeyFile, 'utf8')).trim();
    } catch (err) {
      throw new PtcError(ErrorCode.INVALID_INPUT, `cannot read the Temporal API key file ${apiKeyFile}: ${(err as Error).message}`, { cause: err });
    }
  }
  return {
    natsTls: natsTls ?? file?.natsTls,
    temporalTls: temporalTls ?? (temporalTlsOn || temporalApiKey ? {} : file?.temporalTls),
    ...(temporalApiKey ? { temporalApiKey } : {}),
    natsUrl: given.natsUrl ?? file?.natsUrl ?? '',
    natsCreds: given.natsCreds ?? (file ? credsOfRole(file, role) : ''),
    temporalAddress: given.temporalAddress ?? file?.temporalAddress ?? '',
    temporalNamespace: given.temporalNamespace ?? file?.temporalNamespace ?? 'default',
    temporalUi: file?.temporalUi ?? null,
  };
}

/** An object of optional settings, or undefined when none is set. */
function dropEmpty<T extends Record<string, string | undefined>>(o: T): T | undefined {
  const set = Object.entries(o).filter(([, v]) => v !== undefined);
  return set.length > 0 ? (Object.fromEntries(set) as T) : undefined;
}

function credsOfRole(file: ConnectionFile, role: NatsClientRole): string {
  if (role === 'operator') return file.natsOperatorCreds ?? file.natsCreds;
  if (role === 'viewer') return file.natsViewerCreds ?? file.natsCreds;
  return file.natsCreds;
}

export function connectionEnv(conn: Connection): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PTC_NATS_URL: conn.natsUrl,
    PTC_NATS_CREDS: conn.natsCreds,
    PTC_TEMPORAL_ADDRESS: conn.temporalAddress,
    PTC_TEMPORAL_NAMESPACE: conn.temporalNamespace,
  };
  const set = (name: string, value: string | undefined): void => {
    if (value) env[name] = value;
  };
  set('PTC_NATS_CA', conn.natsTls?.caFile);
  set('PTC_NATS_CERT', conn.natsTls?.certFile);
  set('PTC_NATS_KEY', conn.natsTls?.keyFile);
  if (conn.temporalTls) env.PTC_TEMPORAL_TLS = '1';
  set('PTC_TEMPORAL_CA', conn.temporalTls?.caFile);
  set('PTC_TEMPORAL_CERT', conn.temporalTls?.certFile);
  set('PTC_TEMPORAL_KEY', conn.temporalTls?.keyFile);
  set('PTC_TEMPORAL_SERVER_NAME', conn.temporalTls?.serverName);
  // The API key is passed on by the environment the parent already had, never written anywhere.
  return env;
}

/** NATS TLS settings of an agent, from its flags, then env. */
export function natsTlsFromEnv(env: NodeJS.ProcessEnv = process.env): NatsTlsFiles | undefined {
  return dropEmpty({ caFile: env.PTC_NATS_CA || undefined, certFile: env.PTC_NATS_CERT || undefined, keyFile: env.PTC_NATS_KEY || undefined });
}
