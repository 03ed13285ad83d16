import { compareBdf, type PciAddress, PciAddress as PciAddressSchema } from '../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';
import { DriverName } from '../schemas/ids.js';

/**
 * Which pciback module and modprobe binary a host has. RHEL 5 kernels call the module `pciback` and
 * read /etc/modprobe.conf; current kernels call it `xen-pciback` and kmod reads only /etc/modprobe.d.
 */
export interface ModprobeDialect {
  readonly module: 'pciback' | 'xen-pciback';
  readonly modprobe: string;
}

export const RHEL5_DIALECT: ModprobeDialect = { module: 'pciback', modprobe: '/sbin/modprobe' };
export const KMOD_DIALECT: ModprobeDialect = { module: 'xen-pciback', modprobe: '/sbin/modprobe' };

/** What ptctl manages: the devices it hid and the drivers whose loading it redirects through pciback. */
export interface PcibackConfig {
  readonly hidden: readonly PciAddress[];
  readonly drivers: readonly string[];
}

/** A modprobe file split around ptctl's block; text outside the block is kept byte for byte. */
export interface ModprobeConf {
  readonly before: string;
  readonly after: string;
  readonly managed: PcibackConfig;
  /** Devices hidden by hand outside the block. Our hide= line repeats them because the last hide= wins. */
  readonly foreignHidden: readonly PciAddress[];
  /** The block was appended to text without a final newline, so ptctl added one and owns it. */
  readonly addedLineBreak: boolean;
}

const BEGIN = '# BEGIN ptctl managed block: ptctl rewrites these lines, edit them with ptctl';
const BEGIN_ADDED_BREAK = `${BEGIN} (ptctl added the line break above)`;
const END = '# END ptctl managed block';

const HIDE_LIST = /^(?:\([0-9a-fA-F:.]+\))+$/;

function moduleNamePattern(dialect: ModprobeDialect): string {
  // kmod treats '-' and '_' in module names as the same character.
  return dialect.module.replace(/[-_]/g, '[-_]');
}

function parseHideList(list: string, where: string): PciAddress[] {
  if (!HIDE_LIST.test(list)) throw malformed(`${where}: hide= must be a list like (0000:09:00.0)(0000:0a:04.1)`);
  return [...list.matchAll(/\(([^)]*)\)/g)].map((m) => {
    const parsed = PciAddressSchema.safeParse(m[1]);
    if (!parsed.success) throw malformed(`${where}: "${m[1]}" is not a PCI address`);
    return parsed.data;
  });
}

function malformed(message: string): PtcError {
  return new PtcError(ErrorCode.COMMAND_FAILED, `modprobe configuration cannot be edited safely: ${message}`);
}

function sortedUnique<T extends string>(items: Iterable<T>, compare: (a: T, b: T) => number = (a, b) => (a < b ? -1 : a > b ? 1 : 0)): T[] {
  return [...new Set(items)].sort(compare);
}

export function installLine(driver: string, dialect: ModprobeDialect): string {
  return `install ${driver} ${dialect.modprobe} ${dialect.module}; ${dialect.modprobe} --first-time --ignore-install ${driver}`;
}

export function hideLine(hidden: readonly PciAddress[], dialect: ModprobeDialect): string {
  return `options ${dialect.module} hide=${hidden.map((b) => `(${b})`).join('')}`;
}

function foreignHides(text: string, dialect: ModprobeDialect): PciAddress[] {
  // One line only: blanks are spaces and tabs. `\s` would also match a line break and adopt an orphan
  // `hide=` line that modprobe rejects ("ignoring bad line"), so a device nobody hid would be hidden.
  const re = new RegExp(`^[ \\t]*options[ \\t]+${moduleNamePattern(dialect)}[ \\t]+(?:[^\\n]*[ \\t])?hide=(\\S+)`, 'gm');
  return [...text.matchAll(re)].flatMap((m) => parseHideList(m[1] ?? '', 'a hide= line outside the ptctl block'));
}

export function parseModprobeConf(text: string, dialect: ModprobeDialect): ModprobeConf {
  const lines = text.split('\n');
  const beginIdx = lines.findIndex((l) => l === BEGIN || l === BEGIN_ADDED_BREAK);
  if (beginIdx < 0) {
    if (lines.some((l) => l === END)) throw malformed('an END marker without its BEGIN marker');
    return { before: text, after: '', managed: { hidden: [], drivers: [] }, foreignHidden: sortedUnique(foreignHides(text, dialect), compareBdf), addedLineBreak: false };
  }
  const endIdx = lines.indexOf(END, beginIdx + 1);
  if (endIdx < 0) throw malformed('the BEGIN marker has no END marker');
  if (lines.slice(endIdx + 1).some((l) => l === BEGIN || l === BEGIN_ADDED_BREAK)) throw malformed('more than one ptctl block');

  const addedLineBreak = lines[beginIdx] === BEGIN_ADDED_BREAK;
  let before = lines.slice(0, beginIdx).join('\n');
  // `before` ended with a newline unless ptctl added it; rejoin accordingly.
  if (beginIdx > 0 && !addedLineBreak) before += '\n';
  const after = lines.slice(endIdx + 1).join('\n');

  const drivers: string[] = [];
  let hidden: PciAddress[] | null = null;
  const installRe = new RegExp(
    `^install ([A-Za-z0-9_-]+) ${escapeRe(dialect.modprobe)} ${escapeRe(dialect.module)}; ${escapeRe(dialect.modprobe)} --first-time --ignore-install ([A-Za-z0-9_-]+)$`,
  );
  const hideRe = new RegExp(`^options ${escapeRe(dialect.module)} hide=(\\S+)$`);
  for (const line of lines.slice(beginIdx + 1, endIdx)) {
    const install = installRe.exec(line);
    if (install && install[1] === install[2]) {
      drivers.push(install[1] ?? '');
      continue;
    }
    const hide = hideRe.exec(line);
    if (hide && hidden === null) {
      hidden = parseHideList(hide[1] ?? '', 'the ptctl hide= line');
      continue;
    }
    throw malformed(`unexpected line inside the ptctl block: ${JSON.stringify(line)}`);
  }
  // modprobe passes every options line in file order and the kernel keeps the last hide=, so a hide=
  // line after the block would silently override ours.
  if (foreignHides(after, dialect).length > 0) throw malformed('a hide= line after the ptctl block overrides the ptctl hide= line; move it above the block');
  const foreignHidden = sortedUnique(foreignHides(before, dialect), compareBdf);
  const ours = (hidden ?? []).filter((b) => !foreignHidden.includes(b));
  return { before, after, managed: { hidden: sortedUnique(ours, compareBdf), drivers: sortedUnique(drivers) }, foreignHidden, addedLineBreak };
}

export function renderModprobeConf(conf: ModprobeConf, dialect: ModprobeDialect): string {
  const { hidden, drivers } = conf.managed;
  if (hidden.length === 0 && drivers.length === 0) {
    // The line break ptctl added before its block now ends a foreign line that text after the block follows.
    const keepBreak = conf.before.length > 0 && !conf.before.endsWith('\n') && conf.after.length > 0;
    return conf.before + (keepBreak ? '\n' : '') + conf.after;
  }
  const effectiveHidden = sortedUnique([...conf.foreignHidden, ...hidden], compareBdf);
  const addBreak = conf.before.length > 0 && !conf.before.endsWith('\n');
  const block = [
    addBreak ? BEGIN_ADDED_BREAK : BEGIN,
    ...sortedUnique(drivers).map((d) => installLine(d, dialect)),
    ...(effectiveHidden.length > 0 ? [hideLine(effectiveHidden, dialect)] : []),
    END,
  ].join('\n');
  const before = addBreak ? `${conf.before}\n` : conf.before;
  const tail = conf.after.length > 0 ? `\n${conf.after}` : '\n';
  return before + block + tail;
}

/** All devices the file hides, whoever wrote the line: what pciback will claim at its next load. */
export function effectiveHidden(conf: ModprobeConf): PciAddress[] {
  return sortedUnique([...conf.foreignHidden, ...conf.managed.hidden], compareBdf);
}

/** Returns the config with `bdf` hidden and its driver redirected through pciback. */
/** Adds a device to the hide= list and its driver to the install lines; a null driver (no host driver holds the device) needs no install line. */
export function withHidden(conf: ModprobeConf, bdf: PciAddress, driver: string | null): ModprobeConf {
  // The driver lands in an install line that modprobe runs with /bin/sh, the address in the hide= list:
  // refuse anything the parser would not read back.
  const addr = PciAddressSchema.safeParse(bdf);
  if (!addr.success) throw new PtcError(ErrorCode.INVALID_INPUT, `${JSON.stringify(bdf)} is not a PCI address`);
  if (driver !== null && !DriverName.safeParse(driver).success) throw new PtcError(ErrorCode.INVALID_INPUT, `${JSON.stringify(driver)} is not a driver name`);
  return {
    ...conf,
    managed: {
      hidden: conf.foreignHidden.includes(addr.data) ? conf.managed.hidden : sortedUnique([...conf.managed.hidden, addr.data], compareBdf),
      drivers: driver === null ? conf.managed.drivers : sortedUnique([...conf.managed.drivers, driver]),
    },
  };
}

/**
 * Returns the config without `bdf`. `driversStillNeeded` are the host drivers of the devices that stay
 * hidden: an install line is dropped only when no remaining hidden device needs it.
 */
export function withoutHidden(conf: ModprobeConf, bdf: PciAddress, driversStillNeeded: readonly string[]): ModprobeConf {
  const hidden = conf.managed.hidden.filter((b) => b !== bdf);
  return {
    ...conf,
    managed: {
      hidden,
      drivers: hidden.length === 0 ? [] : conf.managed.drivers.filter((d) => driversStillNeeded.includes(d)),
    },
  };
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
