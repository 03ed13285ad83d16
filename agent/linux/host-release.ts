import { OsRelease } from '../../schemas/inventory.js';
import type { HostTree } from './host-tree.js';

export const UNKNOWN_OS: OsRelease = { name: 'unknown', version: '0' };

export interface HostRelease {
  os: OsRelease;
  /** RHEL 5 and its rebuilds: module-init-tools reading /etc/modprobe.conf, a kernel calling the module `pciback`. */
  rhel5: boolean;
}

const REDHAT_NAMES: readonly (readonly [RegExp, string])[] = [
  [/^Red Hat Enterprise Linux/i, 'rhel'],
  [/^CentOS/i, 'centos'],
  [/^Scientific Linux/i, 'scientific'],
  [/^Oracle Linux|^Enterprise Linux/i, 'ol'],
  [/^Fedora/i, 'fedora'],
];

/**
 * `/etc/redhat-release` ("Red Hat Enterprise Linux Server release 5.4 (Tikanga)" → rhel 5.4);
 * null when the text has no "release N".
 */
export function parseRedhatRelease(text: string): HostRelease | null {
  const line = text.split('\n')[0]?.trim() ?? '';
  const m = /\brelease\s+(\d+(?:\.\d+)*)/i.exec(line);
  if (!m) return null;
  const name = REDHAT_NAMES.find(([re]) => re.test(line))?.[1] ?? (line.split(/\s+/)[0] ?? 'unknown').toLowerCase();
  const parsed = OsRelease.safeParse({ name, version: m[1] });
  if (!parsed.success) return null;
  return { os: parsed.data, rhel5: parsed.data.version.split('.')[0] === '5' };
}

/** `/etc/os-release` (ID, VERSION_ID); a missing VERSION_ID (rolling releases) gives version "0". Null without an ID. */
export function parseOsRelease(text: string): HostRelease | null {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] && m[2] !== undefined) fields.set(m[1], m[2].replace(/^(["'])(.*)\1$/, '$2'));
  }
  const id = fields.get('ID');
  if (!id) return null;
  const version = /^\d+(\.\d+)*/.exec(fields.get('VERSION_ID') ?? '')?.[0] ?? '0';
  const parsed = OsRelease.safeParse({ name: id.toLowerCase(), version });
  if (!parsed.success) return null;
  const redhatFamily = ['rhel', 'centos', 'scientific', 'ol'].includes(parsed.data.name);
  return { os: parsed.data, rhel5: redhatFamily && parsed.data.version.split('.')[0] === '5' };
}

/** The host's release: /etc/redhat-release first (RHEL 5 has no os-release), then /etc/os-release; unknown 0 when neither says. */
export function readHostRelease(tree: HostTree): HostRelease {
  const redhat = tree.textSync('/etc/redhat-release');
  const fromRedhat = redhat === null ? null : parseRedhatRelease(redhat);
  if (fromRedhat) return fromRedhat;
  const osRelease = tree.textSync('/etc/os-release') ?? tree.textSync('/usr/lib/os-release');
  return (osRelease === null ? null : parseOsRelease(osRelease)) ?? { os: UNKNOWN_OS, rhel5: false };
}
