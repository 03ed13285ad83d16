import { compareBdf, type PciAddress, PciAddress as PciAddressSchema } from '../schemas/pci-address.js';
import { ErrorCode, PtcError } from '../schemas/errors.js';

/**
 * The `pci = [ … ]` setting of an xl/xm guest config, read the way xl's lexer reads it: `#` comments,
 * single- or double-quoted strings, a list that spans lines (with comments and a trailing comma),
 * statements separated by newlines or `;`. Each item is xl's PCI_SPEC_STRING:
 * `[DDDD:]BB:DD.F[@VSLOT][,key=value…]` or the `bdf=…,key=value` form. Only the setting's own bytes are
 * rewritten; every other byte of the file is kept, per-device options are kept with their device, and
 * removing the last device removes the setting so the file returns to its bytes.
 */

export interface GuestPciItem {
  readonly bdf: PciAddress;
  /** The item as xl reads it, with the BDF in full lower-case form: `0000:03:00.0@4,permissive=1`. */
  readonly spec: string;
  /** Comment lines written above this item inside a multi-line list. */
  readonly commentsBefore: readonly string[];
  /** A comment on the item's own line, after it. */
  readonly comment: string | null;
}

interface PciSetting {
  /** Offsets in the text: from the `pci` identifier to just after the closing `]`. */
  readonly start: number;
  readonly end: number;
  readonly multiLine: boolean;
  /** Indentation of items and of the closing bracket of a multi-line list. */
  readonly itemIndent: string;
  readonly closeIndent: string;
  /** Comment lines after the last item, before `]`. */
  readonly tailComments: readonly string[];
  readonly items: readonly GuestPciItem[];
}

export interface GuestConfig {
  readonly text: string;
  readonly setting: PciSetting | null;
  /** The items as they will be rendered; equal to the setting's items until an edit. */
  readonly items: readonly GuestPciItem[];
  /** Line (0-based) where the pci setting starts; null when the file has none. */
  readonly pciLineIndex: number | null;
  readonly devices: readonly PciAddress[];
}

function invalid(message: string): PtcError {
  return new PtcError(ErrorCode.GUEST_CONFIG_INVALID, `guest config cannot be edited safely: ${message}`);
}

type Token =
  | { kind: 'nl' | '=' | '+=' | '[' | ']' | ',' | ';' | '(' | ')'; start: number; end: number }
  | { kind: 'other'; start: number; end: number; problem?: string }
  | { kind: 'ident'; start: number; end: number; name: string }
  | { kind: 'string'; start: number; end: number; value: string; problem: string | null }
  | { kind: 'comment'; start: number; end: number; text: string };

/** Tokens of the whole file. Strings and comments must be known everywhere so `pci` inside them is not a setting. */
function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === ' ' || c === '\t' || c === '\r') {
      i++;
    } else if (c === '\n') {
      out.push({ kind: 'nl', start: i, end: i + 1 });
      i++;
    } else if (c === '#') {
      const nl = text.indexOf('\n', i);
      const end = nl < 0 ? text.length : nl;
      out.push({ kind: 'comment', start: i, end, text: text.slice(i, end).replace(/\r$/, '') });
      i = end;
    } else if (c === "'" || c === '"') {
      let j = i + 1;
      let value = '';
      let problem: string | null = null;
      while (j < text.length && text[j] !== c && text[j] !== '\n') {
        // xl decodes C escapes in double-quoted strings; a PCI spec never needs one, so one is refused rather than guessed.
        if (text[j] === '\\') problem ??= 'a backslash escape in a string';
        value += text[j];
        j++;
      }
      if (text[j] !== c) {
        // Unterminated: xl refuses the file, but ptctl only needs the pci setting; outside it this is noise to the line's end.
        out.push({ kind: 'other', start: i, end: j, problem: 'an unterminated string' });
        i = j;
      } else {
        out.push({ kind: 'string', start: i, end: j + 1, value, problem });
        i = j + 1;
      }
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < text.length && /[A-Za-z0-9_]/.test(text[j] as string)) j++;
      out.push({ kind: 'ident', start: i, end: j, name: text.slice(i, j) });
      i = j;
    } else if (c === '+' && text[i + 1] === '=') {
      out.push({ kind: '+=', start: i, end: i + 2 });
      i += 2;
    } else if ('=[],;()'.includes(c)) {
      out.push({ kind: c as '=' | '[' | ']' | ',' | ';' | '(' | ')', start: i, end: i + 1 });
      i++;
    } else {
      out.push({ kind: 'other', start: i, end: i + 1 });
      i++;
    }
  }
  return out;
}

function lineOf(text: string, offset: number): number {
  let n = 0;
  for (let i = 0; i < offset; i++) if (text.charCodeAt(i) === 10) n++;
  return n;
}

/** Whitespace before `offset` on its line when nothing else precedes it there; null otherwise. */
function indentBefore(text: string, offset: number): string | null {
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  const lead = text.slice(lineStart, offset);
  return /^[ \t]*$/.test(lead) ? lead : null;
}

const POSITIONAL = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])(@[0-9a-fA-F]{1,2})?$/;
const OPTION = /^[a-z_]+=[^,'"\s]+$/;

/** One PCI_SPEC_STRING, checked as xl checks it; the spec keeps its VSLOT and options, with a normalised BDF. */
export function parsePciSpec(raw: string): { bdf: PciAddress; spec: string } {
  const parts = raw.trim().split(',');
  const first = parts[0] ?? '';
  const options = parts.slice(1);
  const bad = (why: string): PtcError => invalid(`"${raw}" in pci = is not a PCI device spec xl accepts (${why})`);
  for (const o of options) if (!OPTION.test(o)) throw bad(`option "${o}" is not key=value`);
  if (first.includes('=')) {
    // The key=value form of Xen >= 4.16: `bdf=…` among the keys.
    if (!OPTION.test(first)) throw bad(`"${first}" is not key=value`);
    const found = parts.find((o) => o.startsWith('bdf='));
    const m = found ? POSITIONAL.exec(found.slice(4)) : null;
    if (!m || m[5] !== undefined) throw bad('no bdf=[DDDD:]BB:DD.F key');
    const parsed = PciAddressSchema.safeParse(`${m[1] ?? '0000'}:${m[2]}:${m[3]}.${m[4]}`);
    if (!parsed.success) throw bad('device number out of range');
    return { bdf: parsed.data, spec: parts.map((p) => (p.startsWith('bdf=') ? `bdf=${parsed.data}` : p)).join(',') };
  }
  const m = POSITIONAL.exec(first);
  if (!m) throw bad('not [DDDD:]BB:DD.F[@VSLOT]');
  const parsed = PciAddressSchema.safeParse(`${m[1] ?? '0000'}:${m[2]}:${m[3]}.${m[4]}`);
  if (!parsed.success) throw bad('device number out of range');
  const bdf = parsed.data;
  return { bdf, spec: [`${bdf}${m[5] ?? ''}`, ...options].join(',') };
}

export function parseGuestConfig(text: string): GuestConfig {
  const tokens = tokenize(text);
  let setting: PciSetting | null = null;
  let depth = 0;
  let atStatementStart = true;
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k] as Token;
    if (t.kind === 'comment') continue;
    if (t.kind === '[' || t.kind === '(') depth++;
    else if (t.kind === ']' || t.kind === ')') depth = Math.max(0, depth - 1);
    if (depth === 0 && (t.kind === 'nl' || t.kind === ';')) {
      atStatementStart = true;
      continue;
    }
    const starts = atStatementStart && depth === 0;
    atStatementStart = false;
    if (!(starts && t.kind === 'ident' && t.name === 'pci')) continue;
    const op = tokens[k + 1];
    if (op?.kind !== '=' && op?.kind !== '+=') continue;
    // xl: a later `pci =` replaces an earlier one and `pci +=` extends it; ptctl edits one setting only.
    if (setting !== null || op.kind === '+=') throw invalid(setting !== null ? 'more than one pci setting' : 'pci += (ptctl edits a single pci = setting)');
    const parsed = parseList(text, tokens, k + 2, t.start);
    setting = parsed.setting;
    k = parsed.next - 1;
  }
  // An unclosed bracket elsewhere would hide a pci setting after it from this reader (and xl refuses the file).
  if (depth !== 0) throw invalid('unbalanced brackets in the file');
  const items = setting?.items ?? [];
  return { text, setting, items, pciLineIndex: setting ? lineOf(text, setting.start) : null, devices: devicesOf(items) };
}

function devicesOf(items: readonly GuestPciItem[]): PciAddress[] {
  return items.map((i) => i.bdf);
}

/** The list after `pci =`, starting at token k. */
function parseList(text: string, tokens: readonly Token[], k: number, start: number): { setting: PciSetting; next: number } {
  const open = tokens[k];
  if (open?.kind !== '[') throw invalid(`the pci setting must be a list on the line of pci = (line ${lineOf(text, start) + 1})`);
  const items: GuestPciItem[] = [];
  let pendingComments: string[] = [];
  let expectItem = true;
  let itemIndent: string | null = null;
  for (let j = k + 1; j < tokens.length; j++) {
    const t = tokens[j] as Token;
    if (t.kind === 'nl') continue;
    if (t.kind === 'comment') {
      const last = items[items.length - 1];
      const ownLine = indentBefore(text, t.start) !== null;
      if (!ownLine && last && last.comment === null && pendingComments.length === 0) items[items.length - 1] = { ...last, comment: t.text };
      else pendingComments.push(t.text);
      continue;
    }
    if (t.kind === ']') {
      const end = t.end;
      const multiLine = text.slice(start, end).includes('\n');
      const closeIndent = indentBefore(text, t.start) ?? '';
      return {
        setting: { start, end, multiLine, itemIndent: itemIndent ?? '    ', closeIndent, tailComments: pendingComments, items },
        next: j + 1,
      };
    }
    if (t.kind === ',') {
      if (expectItem) throw invalid('an empty item in pci = [ … ]');
      expectItem = true;
      continue;
    }
    if (t.kind === 'string') {
      if (!expectItem) throw invalid('items in pci = [ … ] must be separated by commas');
      if (t.problem) throw invalid(`${t.problem} in pci = [ … ] at line ${lineOf(text, t.start) + 1}`);
      const { bdf, spec } = parsePciSpec(t.value);
      if (items.some((i) => i.bdf === bdf)) throw invalid(`${bdf} is listed twice in pci = [ … ]`);
      itemIndent ??= indentBefore(text, t.start);
      items.push({ bdf, spec, commentsBefore: pendingComments, comment: null });
      pendingComments = [];
      expectItem = false;
      continue;
    }
    const why = t.kind === 'other' && t.problem ? t.problem : `unexpected "${text.slice(t.start, t.end)}"`;
    throw invalid(`${why} in pci = [ … ] at line ${lineOf(text, t.start) + 1}`);
  }
  throw invalid('pci = [ is never closed');
}

function renderSetting(items: readonly GuestPciItem[], like: PciSetting | null): string {
  const quoted = (i: GuestPciItem): string => `'${i.spec}'`;
  const hasComments = items.some((i) => i.comment !== null || i.commentsBefore.length > 0) || (like?.tailComments.length ?? 0) > 0;
  if (!like?.multiLine && !hasComments) return `pci = [ ${items.map(quoted).join(', ')} ]`;
  const ind = like?.itemIndent ?? '    ';
  const lines = ['pci = ['];
  for (const i of items) {
    for (const c of i.commentsBefore) lines.push(`${ind}${c}`);
    lines.push(`${ind}${quoted(i)},${i.comment === null ? '' : ` ${i.comment}`}`);
  }
  for (const c of like?.tailComments ?? []) lines.push(`${ind}${c}`);
  lines.push(`${like?.closeIndent ?? ''}]`);
  return lines.join('\n');
}

export function renderGuestConfig(conf: GuestConfig): string {
  const { text, setting, items } = conf;
  if (setting === null) {
    if (items.length === 0) return text;
    const line = renderSetting(items, null);
    // Append before the final newline when there is one, as an editor would.
    if (text.endsWith('\n')) return `${text}${line}\n`;
    return text === '' ? `${line}\n` : `${text}\n${line}`;
  }
  if (items === setting.items) return text;
  const before = text.slice(0, setting.start);
  const after = text.slice(setting.end);
  if (items.length === 0) {
    // The setting alone on its lines goes with its lines; sharing a line with other statements, it becomes an empty list.
    const lead = indentBefore(text, setting.start);
    const rest = /^[ \t]*(?:\r?\n|$)/.exec(after);
    if (lead !== null && rest) {
      const lineStart = setting.start - lead.length;
      // The last line of a file without a final newline: its preceding newline goes with it.
      const cut = rest[0].endsWith('\n') || lineStart === 0 ? lineStart : lineStart - 1;
      return text.slice(0, cut) + after.slice(rest[0].length);
    }
    return `${before}pci = [ ]${after}`;
  }
  return `${before}${renderSetting(items, setting)}${after}`;
}

function withItems(conf: GuestConfig, items: readonly GuestPciItem[]): GuestConfig {
  return { ...conf, items, devices: devicesOf(items) };
}

export function withGuestDevice(conf: GuestConfig, bdf: PciAddress): GuestConfig {
  // The address is written between quotes into a file xl parses: refuse anything but a plain BDF.
  const addr = PciAddressSchema.safeParse(bdf);
  if (!addr.success) throw new PtcError(ErrorCode.INVALID_INPUT, `${JSON.stringify(bdf)} is not a PCI address`);
  if (conf.devices.includes(addr.data)) return conf;
  const added: GuestPciItem = { bdf: addr.data, spec: addr.data, commentsBefore: [], comment: null };
  return withItems(conf, [...conf.items, added].sort((a, b) => compareBdf(a.bdf, b.bdf)));
}

export function withoutGuestDevice(conf: GuestConfig, bdf: PciAddress): GuestConfig {
  if (!conf.devices.includes(bdf)) return conf;
  return withItems(conf, conf.items.filter((i) => i.bdf !== bdf));
}

/** The per-device spec xl will use for a device in this config (with its options), or null. */
export function guestDeviceSpec(conf: GuestConfig, bdf: PciAddress): string | null {
  return conf.items.find((i) => i.bdf === bdf)?.spec ?? null;
}

/**
 * Every PCI address a text names anywhere, `03:00.0` read as `0000:03:00.0`: what a config that cannot
 * be parsed might hold, counted as held so the device is not handed to a second guest (fail closed).
 */
export function addressesMentioned(text: string): PciAddress[] {
  const out = new Set<PciAddress>();
  for (const m of text.matchAll(/(?<![0-9a-fA-F:])(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])(?![0-9a-fA-F])/g)) {
    const parsed = PciAddressSchema.safeParse(`${m[1] ?? '0000'}:${m[2]}:${m[3]}.${m[4]}`);
    if (parsed.success) out.add(parsed.data);
  }
  return [...out].sort(compareBdf);
}

/**
 * Where xl and xm look for a guest's config, in the order ptctl tries them: `/etc/xen/<name>`,
 * `/etc/xen/<name>.cfg`, and the autostart links of `/etc/xen/auto/` (xendomains starts those at boot).
 */
export const XEN_CONFIG_DIR = '/etc/xen';
export const XEN_AUTO_DIR = '/etc/xen/auto';

export function guestConfigCandidates(guest: string): string[] {
  return [`${XEN_CONFIG_DIR}/${guest}`, `${XEN_CONFIG_DIR}/${guest}.cfg`, `${XEN_AUTO_DIR}/${guest}`, `${XEN_AUTO_DIR}/${guest}.cfg`];
}

/** The guest name a config file defines (`name = "…"`), or null when it has none. */
export function guestNameOf(text: string): string | null {
  for (const line of text.split('\n')) {
    const m = /^\s*name\s*=\s*(["'])([^"'\n]+)\1\s*(?:#.*)?$/.exec(line);
    if (m) return m[2] ?? null;
  }
  return null;
}

/** A config file name that can hold a guest: `<name>` or `<name>.cfg` (examples, xl.conf and scripts are filtered by their `name =`). */
export function guestNameFromFile(file: string): string {
  return file.endsWith('.cfg') ? file.slice(0, -4) : file;
}

/**
 * The devices a guest's config holds. A config ptctl cannot parse fences only that guest: it is
 * reported with the problem, and every address its file names counts as held (fail closed), so the
 * device cannot be handed to a second guest.
 */
export function guestConfigDevices(text: string | null): { configDevices: PciAddress[]; configProblem: string | null } {
  if (text === null) return { configDevices: [], configProblem: null };
  try {
    return { configDevices: [...parseGuestConfig(text).devices], configProblem: null };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return { configDevices: addressesMentioned(text), configProblem: message.slice(0, 500) };
  }
}
