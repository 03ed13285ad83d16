import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { parse } from 'yaml';
import { z } from 'zod';
import { buildProgram } from '../../cli/main.js';
import { PROJECT_ROOT } from '../../cli/tools.js';
import { describeZodError } from '../../schemas/errors.js';
import { IMAGES } from '../containers/images.js';

/**
 * What ptctl relies on in docker-compose.yml and its local override, as a schema (strict: a key we do
 * not know is a mistake here, not an extension), plus the checks a schema cannot express. Used by the
 * unit test (static, no engine) and by the local profile's runner before anything starts.
 */
const Healthcheck = z
  .object({
    test: z.array(z.string()).min(2),
    interval: z.string().optional(),
    timeout: z.string().optional(),
    retries: z.number().int().positive().optional(),
    start_period: z.string().optional(),
  })
  .strict();

const Condition = z.enum(['service_started', 'service_healthy', 'service_completed_successfully']);

const Service = z
  .object({
    image: z.string(),
    build: z.string().optional(),
    command: z.array(z.string()).optional(),
    entrypoint: z.array(z.string()).optional(),
    environment: z.record(z.string(), z.string()).optional(),
    volumes: z.array(z.string()).optional(),
    ports: z.array(z.string()).optional(),
    depends_on: z.record(z.string(), z.object({ condition: Condition }).strict()).optional(),
    healthcheck: Healthcheck.optional(),
    restart: z.string().optional(),
    // Only host networking exists on these machines; the base file uses the default network.
    network_mode: z.literal('host').optional(),
  })
  .strict();
export type ComposeService = z.infer<typeof Service>;

export const ComposeFile = z
  .object({
    services: z.record(z.string(), Service),
    volumes: z.record(z.string(), z.null()).optional(),
  })
  .strict();
export type ComposeFile = z.infer<typeof ComposeFile>;

const OverrideFile = z.object({ services: z.record(z.string(), Service.partial().strict()) }).strict();
export type OverrideFile = z.infer<typeof OverrideFile>;

export const BASE_FILE = join(PROJECT_ROOT, 'docker-compose.yml');
export const LOCAL_OVERRIDE = join(PROJECT_ROOT, 'test', 'compose', 'docker-compose.local.yml');
export const DOCKERFILE = join(PROJECT_ROOT, 'Dockerfile');

/** Services that exist only for the PostgreSQL-backed Temporal server; the local profile's dev server needs none of them. */
export const LOCAL_DROPPED = ['postgresql', 'temporal-schema', 'temporal-create-namespace', 'temporal-ui'] as const;

const PACKAGE_VERSION = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
/** The image docker-compose.yml builds from the Dockerfile, tagged with the package's version. */
export const PTCTL_IMAGE = `ptctl:${PACKAGE_VERSION}`;
const isPtctlImage = (image: string | undefined): boolean => image === PTCTL_IMAGE || image === IMAGES.ptctl;

/** A full version (1.31.0, 16.9-bookworm, 2.15.1-alpine): never `latest`, never a moving major like `16`. */
const PINNED_TAG = /^\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?$/;

/** Every PTC_* name ptctl's own code reads, found in its sources (cli/, transport/, activities/, agent/). */
export function envNamesReadByPtctl(): Set<string> {
  const names = new Set<string>();
  for (const dir of ['cli', 'transport', 'activities', 'agent']) {
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts')) {
          for (const m of readFileSync(p, 'utf8').matchAll(/(?:env\.|env\[['"]|fromEnvVar\(['"]|: ['"])(PTC_[A-Z0-9_]+)/g)) names.add(m[1] ?? '');
        }
      }
    };
    walk(join(PROJECT_ROOT, dir));
  }
  names.delete('');
  return names;
}

/** Problems with a ptctl argument vector: the (sub)command must exist and every --flag must be one of its options. */
export function ptctlArgvProblems(argv: readonly string[], program: Command = buildProgram()): string[] {
  let cmd: Command = program;
  let i = 0;
  while (i < argv.length && !argv[i]?.startsWith('-')) {
    const sub = cmd.commands.find((c) => c.name() === argv[i]);
    if (!sub) {
      if (cmd === program) return [`\`ptctl ${argv.join(' ')}\`: ${argv[i]} is not a ptctl command`];
      break; // a positional argument
    }
    cmd = sub;
    i++;
  }
  const known = new Set(['--help', ...cmd.options.map((o) => o.long ?? '')]);
  return argv
    .slice(i)
    .filter((a) => a.startsWith('--'))
    .map((a) => a.split('=')[0] ?? a)
    .filter((a) => !known.has(a))
    .map((a) => `\`ptctl ${argv.join(' ')}\`: ${a} is not an option of \`ptctl ${cmd === program ? '' : cmd.name()}\``);
}

/** The argv of `ptctl` a ptctl-image service or health check runs, or null when it runs something else. */
function ptctlArgv(test: readonly string[]): string[] | null {
  const [kind, bin, ...rest] = test;
  return kind === 'CMD' && bin === 'ptctl' ? rest : null;
}

export function parseYaml<T extends z.ZodType>(schema: T, text: string, what: string): { value: z.infer<T> | null; problems: string[] } {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    return { value: null, problems: [`${what}: not YAML: ${(err as Error).message}`] };
  }
  const parsed = schema.safeParse(raw);
  return parsed.success ? { value: parsed.data, problems: [] } : { value: null, problems: [`${what}: ${describeZodError(parsed.error, what)}`] };
}

/** Checks of docker-compose.yml; an empty list means it passes. */
export function checkBaseFile(text: string, envNames = envNamesReadByPtctl()): string[] {
  const { value, problems } = parseYaml(ComposeFile, text, 'docker-compose.yml');
  if (!value) return problems;
  const services = value.services;
  for (const [name, s] of Object.entries(services)) {
    const [, tag] = s.image.split(/:(?=[^:/]+$)/);
    if (s.image === PTCTL_IMAGE) {
      if (s.build !== undefined && s.build !== '.') problems.push(`${name}: ptctl's image builds from the top-level Dockerfile (build: .)`);
    } else if (!tag || !PINNED_TAG.test(tag)) problems.push(`${name}: image ${s.image} is not pinned to a full version tag`);
    if (s.build !== undefined && s.image !== PTCTL_IMAGE) problems.push(`${name}: only ptctl's own image (${PTCTL_IMAGE}) is built`);
    if (s.network_mode) problems.push(`${name}: the base file uses the default network; host networking belongs in the local override`);
    for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
      const target = services[dep];
      if (!target) problems.push(`${name}: depends on ${dep}, which is not a service`);
      else if (condition === 'service_healthy' && !target.healthcheck) problems.push(`${name}: waits for ${dep} to be healthy, but ${dep} has no health check`);
    }
    if (s.image === PTCTL_IMAGE) problems.push(...ptctlServiceProblems(name, s, envNames));
  }
  for (const [name, s] of Object.entries(services)) {
    for (const v of s.volumes ?? []) {
      const source = v.split(':')[0] ?? '';
      if (!source.startsWith('/') && !source.startsWith('.') && !(value.volumes && source in value.volumes)) problems.push(`${name}: volume ${source} is not declared`);
    }
  }
  return problems;
}

function ptctlServiceProblems(name: string, s: Partial<ComposeService>, envNames: Set<string>): string[] {
  const problems: string[] = [];
  if (s.entrypoint) problems.push(`${name}: ptctl services keep the image's entrypoint (ptctl)`);
  if (s.command) problems.push(...ptctlArgvProblems(s.command).map((p) => `${name}: ${p}`));
  const check = s.healthcheck ? ptctlArgv(s.healthcheck.test) : null;
  if (s.healthcheck && !check) problems.push(`${name}: its health check must run \`ptctl …\` (CMD ptctl …)`);
  if (check) problems.push(...ptctlArgvProblems(check).map((p) => `${name} health check: ${p}`));
  for (const env of Object.keys(s.environment ?? {})) {
    if (!envNames.has(env)) problems.push(`${name}: sets ${env}, which ptctl never reads`);
  }
  return problems;
}

/** Checks of the local override against the base: host networking everywhere, only images built here. */
export function checkLocalOverride(text: string, base: ComposeFile, envNames = envNamesReadByPtctl()): string[] {
  const { value, problems } = parseYaml(OverrideFile, text, 'docker-compose.local.yml');
  if (!value) return problems;
  const local = new Set<string>(Object.values(IMAGES));
  for (const name of Object.keys(base.services)) {
    if ((LOCAL_DROPPED as readonly string[]).includes(name)) continue;
    const o = value.services[name];
    if (!o) {
      problems.push(`${name}: not in the local override (it must run with host networking and a local image)`);
      continue;
    }
    if (o.network_mode !== 'host') problems.push(`${name}: the local override must set network_mode: host`);
    if (!o.image || !local.has(o.image)) problems.push(`${name}: the local override must use an image built here (${[...local].join(', ')}), not ${o.image ?? 'the base file\'s'}`);
    if (isPtctlImage(o.image)) problems.push(...ptctlServiceProblems(name, o, envNames));
  }
  for (const name of Object.keys(value.services)) {
    if (!base.services[name]) problems.push(`${name}: in the local override but not in docker-compose.yml`);
  }
  return problems;
}

/** Checks of the Dockerfile: its entrypoint is the `ptctl` it links, its default command a real one. */
export function checkDockerfile(text: string, program: Command = buildProgram()): string[] {
  const problems: string[] = [];
  const json = (instr: string): string[] | null => {
    const m = new RegExp(`^${instr}\\s+(\\[.*\\])\\s*$`, 'm').exec(text);
    if (!m?.[1]) return null;
    try {
      return z.array(z.string()).parse(JSON.parse(m[1]));
    } catch {
      return null;
    }
  };
  const entrypoint = json('ENTRYPOINT');
  if (!entrypoint || entrypoint.length !== 1 || entrypoint[0] !== 'ptctl') problems.push('Dockerfile: ENTRYPOINT must be ["ptctl"] (exec form)');
  if (!/ln -s \/app\/bin\/ptctl\.js \/usr\/local\/bin\/ptctl/.test(text)) problems.push('Dockerfile: /usr/local/bin/ptctl must link the built bin/ptctl.js');
  const cmd = json('CMD');
  if (!cmd) problems.push('Dockerfile: CMD must be an exec-form ptctl argument list');
  else problems.push(...ptctlArgvProblems(cmd, program).map((p) => `Dockerfile CMD: ${p}`));
  if (!/^USER\s+10001/m.test(text)) problems.push('Dockerfile: the runtime stage must run as the unprivileged user 10001');
  const copied = new Set<string>();
  for (const m of text.matchAll(/^COPY (?!--from)(\S+) /gm)) {
    const src = m[1] ?? '';
    copied.add(src);
    try {
      readdirSync(join(PROJECT_ROOT, src));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') problems.push(`Dockerfile: COPY ${src}: no such file or folder`);
    }
  }
  // Every source folder the build compiles, except the tests and benchmarks, must be in the image:
  // a folder added to tsconfig.json and not here fails the image's tsc (seen once: observability/).
  const tsconfig = z.object({ include: z.array(z.string()) }).parse(JSON.parse(readFileSync(join(PROJECT_ROOT, 'tsconfig.json'), 'utf8')));
  for (const folder of tsconfig.include.filter((f) => f !== 'test' && f !== 'bench')) {
    if (!copied.has(folder)) problems.push(`Dockerfile: the build stage does not COPY ${folder}/, which tsconfig.json compiles`);
  }
  return problems;
}

/**
 * The effective local file: base + override merged by docker-compose itself, minus what only the
 * PostgreSQL-backed server needs (and the dependencies on it, which an override cannot remove), minus
 * published ports and build sections (host networking; every image is built beforehand). Refuses any
 * service that would not run with host networking on an image built here.
 */
export function localProfile(merged: ComposeFile): ComposeFile {
  const local = new Set<string>(Object.values(IMAGES));
  const dropped = new Set<string>(LOCAL_DROPPED);
  const services: ComposeFile['services'] = {};
  for (const [name, s] of Object.entries(merged.services)) {
    if (dropped.has(name)) continue;
    if (s.network_mode !== 'host') throw new Error(`${name} would not use host networking; refusing to start it (no bridge network may exist here)`);
    if (!local.has(s.image)) throw new Error(`${name} uses ${s.image}, which is not built here; refusing to start it (nothing may be pulled)`);
    const named = (s.volumes ?? []).filter((v) => !v.startsWith('/'));
    if (named.length > 0) throw new Error(`${name} mounts named volumes (${named.join(', ')}); the local profile bind-mounts its state under the run's dir`);
    const { ports: _ports, build: _build, depends_on: deps, ...rest } = s;
    const kept = Object.fromEntries(Object.entries(deps ?? {}).filter(([d]) => !dropped.has(d)));
    services[name] = { ...rest, ...(Object.keys(kept).length > 0 ? { depends_on: kept } : {}) };
  }
  return { services };
}

/** The merged configuration as docker-compose 1.29 prints it, normalised to the shapes compose-file.ts knows. */
export function normaliseMerged(raw: unknown): unknown {
  const doc = raw as { services?: Record<string, Record<string, unknown>>; version?: unknown; volumes?: unknown; networks?: unknown };
  if (doc.networks) throw new Error('the merged configuration declares networks; refusing (only host networking may be used)');
  for (const s of Object.values(doc.services ?? {})) {
    // Both are dropped by localProfile; 1.29 prints them in long form.
    delete s.build;
    delete s.ports;
    if (s.healthcheck && typeof s.healthcheck === 'object') {
      const h = s.healthcheck as Record<string, unknown>;
      for (const k of ['interval', 'timeout', 'start_period']) if (typeof h[k] === 'number') h[k] = `${String(h[k])}s`;
    }
    if (Array.isArray(s.volumes)) s.volumes = (s.volumes as unknown[]).map((v) => (typeof v === 'string' ? v : `${String((v as { source: string }).source)}:${String((v as { target: string }).target)}${(v as { read_only?: boolean }).read_only ? ':ro' : ''}`));
  }
  // Named volumes are left out: the local profile bind-mounts all its state (localProfile checks it).
  return { services: doc.services };
}
