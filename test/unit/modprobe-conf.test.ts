import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  effectiveHidden,
  hideLine,
  installLine,
  KMOD_DIALECT,
  type ModprobeConf,
  type ModprobeDialect,
  parseModprobeConf,
  RHEL5_DIALECT,
  renderModprobeConf,
  withHidden,
  withoutHidden,
} from '../../agent/modprobe-conf.js';
import { PROJECT_ROOT } from '../../cli/tools.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { PciAddress } from '../../schemas/pci-address.js';

// The exact marker lines are part of the on-disk format: spelled out here so a change to them is a
// deliberate, visible test change and the oracles below do not depend on the module under test.
const BEGIN = '# BEGIN ptctl managed block: ptctl rewrites these lines, edit them with ptctl';
const BEGIN_ADDED = `${BEGIN} (ptctl added the line break above)`;
const END = '# END ptctl managed block';

const RUNS = 200;
const DIALECTS: readonly (readonly [string, ModprobeDialect])[] = [
  ['RHEL5_DIALECT', RHEL5_DIALECT],
  ['KMOD_DIALECT', KMOD_DIALECT],
];

// ---------------------------------------------------------------------------------------------
// Helpers and independent oracles
// ---------------------------------------------------------------------------------------------

function sorted(items: Iterable<string>): string[] {
  return [...new Set(items)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function hideOne(text: string, d: ModprobeDialect, bdf: PciAddress, driver: string): string {
  return renderModprobeConf(withHidden(parseModprobeConf(text, d), bdf, driver), d);
}

function unhideOne(text: string, d: ModprobeDialect, bdf: PciAddress, stillNeeded: readonly string[]): string {
  return renderModprobeConf(withoutHidden(parseModprobeConf(text, d), bdf, stillNeeded), d);
}

/** The block ptctl must write, built from the format description rather than from the module. */
function blockLines(d: ModprobeDialect, drivers: readonly string[], hide: readonly string[], added: boolean): string[] {
  return [
    added ? BEGIN_ADDED : BEGIN,
    ...sorted(drivers).map((drv) => `install ${drv} ${d.modprobe} ${d.module}; ${d.modprobe} --first-time --ignore-install ${drv}`),
    ...(hide.length > 0 ? [`options ${d.module} hide=${sorted(hide).map((b) => `(${b})`).join('')}`] : []),
    END,
  ];
}

/** The whole file ptctl must write around foreign text `before` and `after`. */
function expectedFile(d: ModprobeDialect, before: string, after: string, drivers: readonly string[], managedHidden: readonly string[], foreignHidden: readonly string[]): string {
  const needsBreak = before.length > 0 && !before.endsWith('\n');
  if (drivers.length === 0 && managedHidden.length === 0) return before + (needsBreak && after.length > 0 ? '\n' : '') + after;
  const block = blockLines(d, drivers, [...foreignHidden, ...managedHidden], needsBreak).join('\n');
  return `${before}${needsBreak ? '\n' : ''}${block}\n${after}`;
}

/**
 * The foreign text of a file: the file with ptctl's block cut out. A line break ptctl added in front
 * of its block goes with the block, unless somebody wrote lines after the block: then it separates
 * two foreign lines and must stay.
 */
function stripBlock(text: string): string {
  const lines = text.split('\n');
  const b = lines.findIndex((l) => l === BEGIN || l === BEGIN_ADDED);
  if (b < 0) return text;
  const e = lines.indexOf(END, b + 1);
  assert.ok(e > b, 'test oracle: BEGIN without END');
  const head = lines.slice(0, b);
  const tail = lines.slice(e + 1);
  if (lines[b] === BEGIN_ADDED && tail.length === 1 && tail[0] === '') return head.join('\n');
  return [...head, ...tail].join('\n');
}

function blockOf(text: string): string[] {
  const lines = text.split('\n');
  const b = lines.findIndex((l) => l === BEGIN || l === BEGIN_ADDED);
  if (b < 0) return [];
  return lines.slice(b, lines.indexOf(END, b + 1) + 1);
}

function isMalformed(pattern?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof PtcError, `expected a PtcError, got ${String(err)}`);
    assert.equal(err.code, ErrorCode.COMMAND_FAILED);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

const hex = (digits: number, max: number): fc.Arbitrary<string> => fc.integer({ min: 0, max }).map((v) => v.toString(16).padStart(digits, '0'));

/** A few fixed addresses so that generated operations collide (re-add, remove, foreign overlap). */
const BDF_POOL: readonly PciAddress[] = ['0000:09:00.0', '0000:0a:04.1', '0000:05:00.0', '0000:00:19.0', '0001:ff:1f.7', '0000:0a:04.0'];
const arbBdfWide: fc.Arbitrary<PciAddress> = fc
  .tuple(fc.constantFrom('0000', '0001', 'ffff'), hex(2, 0xff), fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0, max: 7 }))
  .map(([dom, bus, dev, fn]) => `${dom}:${bus}:${dev.toString(16).padStart(2, '0')}.${fn}`);
const arbBdf: fc.Arbitrary<PciAddress> = fc.oneof(fc.constantFrom(...BDF_POOL), arbBdfWide);

const DRIVER_POOL = ['bnx2', 'e1000e', 'igb', 'ixgbe', 'mlx4_core', 'tg3', 'xen-netback'];
const arbDriver: fc.Arbitrary<string> = fc.oneof(fc.constantFrom(...DRIVER_POOL), fc.stringMatching(/^[A-Za-z0-9_-]{1,16}$/));

interface ForeignLine {
  readonly line: string;
  /** Devices this line hides for the dialect under test (what ptctl must adopt). */
  readonly hides: readonly PciAddress[];
}

function spellings(d: ModprobeDialect): { own: string[]; other: string[] } {
  return d.module === 'pciback' ? { own: ['pciback'], other: ['xen-pciback', 'xen_pciback'] } : { own: ['xen-pciback', 'xen_pciback'], other: ['pciback'] };
}

/** A well-formed hand-written hide= line for the dialect's module: ptctl must adopt its devices. */
function arbForeignHideLine(d: ModprobeDialect): fc.Arbitrary<ForeignLine> {
  return fc
    .record({
      spelling: fc.constantFrom(...spellings(d).own),
      lead: fc.constantFrom('', ' ', '\t'),
      sep: fc.constantFrom(' ', '\t', '  '),
      pre: fc.constantFrom('', 'permissive ', 'verbose_request=1 '),
      list: fc.uniqueArray(arbBdf, { minLength: 1, maxLength: 3 }),
      upper: fc.boolean(),
      post: fc.constantFrom('', ' permissive', '\r', ' '),
    })
    .map(({ spelling, lead, sep, pre, list, upper, post }) => ({
      line: `${lead}options${sep}${spelling}${sep}${pre}hide=${list.map((b) => `(${upper ? b.toUpperCase() : b})`).join('')}${post}`,
      hides: list,
    }));
}

/** Lines that must be kept byte for byte and adopt nothing. Some look deliberately close to ours. */
function arbPlainLine(d: ModprobeDialect): fc.Arbitrary<ForeignLine> {
  const { own, other } = spellings(d);
  const fixed = [
    '',
    '   ',
    '\t',
    '#',
    '# /etc/modprobe.conf: hand-written',
    'alias eth0 bnx2',
    'alias scsi_hostadapter ata_piix',
    'blacklist bnx2',
    'install foo /bin/true',
    'remove foo /bin/true',
    'options foo bar=1',
    'softdep e1000e pre: crc32c',
    `options ${own[0] ?? ''} permissive`,
    // A bare options line and an orphan hide= line: kmod rejects both ("ignoring bad line"), so the
    // orphan hides nothing and must not be adopted even though it follows an options line.
    `options ${own[0] ?? ''}`,
    'hide=(0000:0e:00.0)',
    `# options ${own[0] ?? ''} hide=(0000:0f:00.0)`,
    `options ${other[0] ?? ''} hide=(0000:0d:00.0)`,
    `options ${own[0] ?? ''}x hide=(0000:0c:00.0)`,
    `options ${own[0] ?? ''} nohide=(0000:0b:00.0)`,
    // A foreign copy of exactly what ptctl writes, outside the block: foreign, kept as is.
    installLine('bnx2', d),
    `${BEGIN} `,
    `#${END}`,
  ];
  const random = fc
    .string({ unit: fc.oneof(fc.constantFrom('\t', '\r', ' ', '#', '(', ')', '='), fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 })), maxLength: 24 })
    .filter((s) => !s.includes('\n') && !s.includes('hide=') && s !== BEGIN && s !== BEGIN_ADDED && s !== END);
  return fc.oneof(fc.constantFrom(...fixed), random).map((line) => ({ line, hides: [] }));
}

interface ForeignText {
  readonly text: string;
  readonly hides: readonly PciAddress[];
}

/** Arbitrary foreign file text, possibly empty, with or without a final newline, LF or CRLF lines. */
function arbForeignText(d: ModprobeDialect, opts: { hides: boolean } = { hides: true }): fc.Arbitrary<ForeignText> {
  const line = opts.hides ? fc.oneof({ arbitrary: arbPlainLine(d), weight: 4 }, { arbitrary: arbForeignHideLine(d), weight: 1 }) : arbPlainLine(d);
  return fc.record({ lines: fc.array(line, { maxLength: 8 }), trailingNewline: fc.boolean(), crlf: fc.boolean() }).map(({ lines, trailingNewline, crlf }) => {
    const eol = crlf ? '\r\n' : '\n';
    const body = lines.map((l) => l.line).join(eol);
    return { text: body + (trailingNewline && lines.length > 0 ? eol : ''), hides: lines.flatMap((l) => l.hides) };
  });
}

type Op = { readonly kind: 'add'; readonly bdf: PciAddress; readonly driver: string } | { readonly kind: 'remove'; readonly bdf: PciAddress };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('add' as const), bdf: arbBdf, driver: arbDriver }),
  fc.record({ kind: fc.constant('remove' as const), bdf: arbBdf }),
);

/** What the caller of withHidden/withoutHidden knows: the device → driver map of ptctl's devices. */
class Model {
  readonly hidden = new Set<PciAddress>();
  drivers = new Set<string>();
  private readonly driverOf = new Map<PciAddress, string>();

  constructor(readonly foreign: ReadonlySet<PciAddress>) {}

  add(bdf: PciAddress, driver: string): void {
    if (!this.foreign.has(bdf)) this.hidden.add(bdf);
    this.driverOf.set(bdf, driver);
    this.drivers.add(driver);
  }

  /** Returns the drivers still needed by the devices that stay hidden, as a caller would pass them. */
  remove(bdf: PciAddress): string[] {
    this.hidden.delete(bdf);
    const stillNeeded = [...this.hidden].map((b) => this.driverOf.get(b) ?? '');
    this.drivers = this.hidden.size === 0 ? new Set() : new Set([...this.drivers].filter((drv) => stillNeeded.includes(drv)));
    return stillNeeded;
  }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

void describe('modprobe-conf: table tests', () => {
  void it('renders the Red Hat guide example (RHEL 5, bnx2 at 0000:09:00.0), then adds 0000:0a:04.1', () => {
    const original = 'alias eth0 bnx2\nalias scsi_hostadapter ata_piix\n';
    const one = hideOne(original, RHEL5_DIALECT, '0000:09:00.0', 'bnx2');
    assert.equal(
      one,
      'alias eth0 bnx2\nalias scsi_hostadapter ata_piix\n' +
        '# BEGIN ptctl managed block: ptctl rewrites these lines, edit them with ptctl\n' +
        'install bnx2 /sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install bnx2\n' +
        'options pciback hide=(0000:09:00.0)\n' +
        '# END ptctl managed block\n',
    );
    const two = hideOne(one, RHEL5_DIALECT, '0000:0a:04.1', 'bnx2');
    assert.equal(
      two,
      'alias eth0 bnx2\nalias scsi_hostadapter ata_piix\n' +
        '# BEGIN ptctl managed block: ptctl rewrites these lines, edit them with ptctl\n' +
        'install bnx2 /sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install bnx2\n' +
        'options pciback hide=(0000:09:00.0)(0000:0a:04.1)\n' +
        '# END ptctl managed block\n',
    );
    const parsed = parseModprobeConf(two, RHEL5_DIALECT);
    assert.deepEqual(parsed.managed, { hidden: ['0000:09:00.0', '0000:0a:04.1'], drivers: ['bnx2'] });
    assert.deepEqual(effectiveHidden(parsed), ['0000:09:00.0', '0000:0a:04.1']);
    // Removing both (in either order) gives the file back.
    assert.equal(unhideOne(unhideOne(two, RHEL5_DIALECT, '0000:09:00.0', ['bnx2']), RHEL5_DIALECT, '0000:0a:04.1', []), original);
    assert.equal(unhideOne(unhideOne(two, RHEL5_DIALECT, '0000:0a:04.1', ['bnx2']), RHEL5_DIALECT, '0000:09:00.0', []), original);
  });

  void it('installLine and hideLine spell the guide lines exactly', () => {
    assert.equal(installLine('bnx2', RHEL5_DIALECT), 'install bnx2 /sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install bnx2');
    assert.equal(hideLine(['0000:09:00.0', '0000:0a:04.1'], RHEL5_DIALECT), 'options pciback hide=(0000:09:00.0)(0000:0a:04.1)');
    assert.equal(installLine('e1000e', KMOD_DIALECT), 'install e1000e /sbin/modprobe xen-pciback; /sbin/modprobe --first-time --ignore-install e1000e');
    assert.equal(hideLine(['0000:00:19.0'], KMOD_DIALECT), 'options xen-pciback hide=(0000:00:19.0)');
  });

  void it('renders the xen-pciback dialect for current kernels', () => {
    const original = '# /etc/modprobe.d/ptctl.conf\n';
    let text = hideOne(original, KMOD_DIALECT, '0000:0a:04.1', 'igb');
    text = hideOne(text, KMOD_DIALECT, '0000:00:19.0', 'e1000e');
    assert.equal(
      text,
      '# /etc/modprobe.d/ptctl.conf\n' +
        `${BEGIN}\n` +
        'install e1000e /sbin/modprobe xen-pciback; /sbin/modprobe --first-time --ignore-install e1000e\n' +
        'install igb /sbin/modprobe xen-pciback; /sbin/modprobe --first-time --ignore-install igb\n' +
        'options xen-pciback hide=(0000:00:19.0)(0000:0a:04.1)\n' +
        `${END}\n`,
    );
    // A RHEL 5 parser does not recognise the xen-pciback block: it refuses instead of guessing.
    assert.throws(() => parseModprobeConf(text, RHEL5_DIALECT), isMalformed(/unexpected line inside the ptctl block/));
    text = unhideOne(text, KMOD_DIALECT, '0000:00:19.0', ['igb']);
    text = unhideOne(text, KMOD_DIALECT, '0000:0a:04.1', []);
    assert.equal(text, original);
  });

  void it('starts from an empty file and returns to an empty file', () => {
    for (const [, d] of DIALECTS) {
      const text = hideOne('', d, '0000:09:00.0', 'bnx2');
      assert.equal(text, `${blockLines(d, ['bnx2'], ['0000:09:00.0'], false).join('\n')}\n`);
      assert.equal(unhideOne(text, d, '0000:09:00.0', []), '');
    }
  });

  void it('adds a line break before its block when the file lacks a final newline, and takes it away again', () => {
    const text = hideOne('alias eth0 bnx2', RHEL5_DIALECT, '0000:09:00.0', 'bnx2');
    assert.equal(
      text,
      'alias eth0 bnx2\n' +
        `${BEGIN_ADDED}\n` +
        'install bnx2 /sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install bnx2\n' +
        'options pciback hide=(0000:09:00.0)\n' +
        `${END}\n`,
    );
    assert.equal(parseModprobeConf(text, RHEL5_DIALECT).addedLineBreak, true);
    assert.equal(unhideOne(text, RHEL5_DIALECT, '0000:09:00.0', []), 'alias eth0 bnx2');
  });

  void it('keeps lines written after its block on their own line when the block goes away', () => {
    // 'alias eth0 bnx2' had no final newline, ptctl added one; then somebody appended a line after the block.
    const text = `${hideOne('alias eth0 bnx2', RHEL5_DIALECT, '0000:09:00.0', 'bnx2')}alias eth1 tg3\n`;
    const conf = parseModprobeConf(text, RHEL5_DIALECT);
    assert.equal(conf.before, 'alias eth0 bnx2');
    assert.equal(conf.after, 'alias eth1 tg3\n');
    assert.equal(unhideOne(text, RHEL5_DIALECT, '0000:09:00.0', []), 'alias eth0 bnx2\nalias eth1 tg3\n');
  });

  void it('repeats a foreign hide= line in its own line and never removes the foreign one', () => {
    const original = 'options pciback hide=(0000:05:00.0)\n';
    const conf = parseModprobeConf(original, RHEL5_DIALECT);
    assert.deepEqual(conf.foreignHidden, ['0000:05:00.0']);
    assert.deepEqual(effectiveHidden(conf), ['0000:05:00.0']);
    const text = hideOne(original, RHEL5_DIALECT, '0000:09:00.0', 'bnx2');
    assert.equal(
      text,
      'options pciback hide=(0000:05:00.0)\n' +
        `${BEGIN}\n` +
        'install bnx2 /sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install bnx2\n' +
        // modprobe passes every options line; the kernel keeps the last hide=, so ours lists both.
        'options pciback hide=(0000:05:00.0)(0000:09:00.0)\n' +
        `${END}\n`,
    );
    const reparsed = parseModprobeConf(text, RHEL5_DIALECT);
    assert.deepEqual(reparsed.managed.hidden, ['0000:09:00.0']);
    assert.deepEqual(reparsed.foreignHidden, ['0000:05:00.0']);
    assert.deepEqual(effectiveHidden(reparsed), ['0000:05:00.0', '0000:09:00.0']);
    // Removing the foreign device is not ptctl's to do: the foreign line stays, so it stays hidden.
    assert.equal(unhideOne(text, RHEL5_DIALECT, '0000:05:00.0', ['bnx2']), text);
    assert.equal(unhideOne(text, RHEL5_DIALECT, '0000:09:00.0', []), original);
  });

  void it('adopts kmod spellings of the foreign module name, with other options on the line', () => {
    const original = 'options xen_pciback permissive hide=(0000:05:00.0)(0000:06:00.1)\n\toptions  xen-pciback  hide=(0000:07:00.0)\r\n';
    const conf = parseModprobeConf(original, KMOD_DIALECT);
    assert.deepEqual(conf.foreignHidden, ['0000:05:00.0', '0000:06:00.1', '0000:07:00.0']);
    // The same lines name another module for a RHEL 5 host.
    assert.deepEqual(parseModprobeConf(original, RHEL5_DIALECT).foreignHidden, []);
  });

  void it('adding a device that a foreign line already hides adds only its install line', () => {
    const original = 'options xen-pciback hide=(0000:05:00.0)\n';
    const text = hideOne(original, KMOD_DIALECT, '0000:05:00.0', 'tg3');
    assert.deepEqual(blockOf(text), [BEGIN, installLine('tg3', KMOD_DIALECT), 'options xen-pciback hide=(0000:05:00.0)', END]);
    assert.deepEqual(parseModprobeConf(text, KMOD_DIALECT).managed, { hidden: [], drivers: ['tg3'] });
    assert.equal(unhideOne(text, KMOD_DIALECT, '0000:05:00.0', []), original);
  });

  void it('does not adopt hide= text that modprobe itself would not apply', () => {
    for (const [, d] of DIALECTS) {
      const mod = d.module;
      const text = [
        `# options ${mod} hide=(0000:01:00.0)`,
        `options ${mod}`,
        'hide=(0000:02:00.0)',
        `options ${mod} foo`,
        'hide=(0000:03:00.0)',
        'options',
        `${mod} hide=(0000:04:00.0)`,
        `options ${mod} nohide=(0000:05:00.0)`,
        '',
      ].join('\n');
      assert.deepEqual(parseModprobeConf(text, d).foreignHidden, [], d.module);
    }
  });

  void it('refuses a hand-written hide= line after the block, which would override ptctl (last hide= wins)', () => {
    const text = `${hideOne('', KMOD_DIALECT, '0000:09:00.0', 'bnx2')}options xen_pciback hide=(0000:05:00.0)\n`;
    assert.throws(() => parseModprobeConf(text, KMOD_DIALECT), isMalformed(/after the ptctl block/));
    // Other lines after the block are fine.
    const ok = `${hideOne('', KMOD_DIALECT, '0000:09:00.0', 'bnx2')}options xen_pciback permissive\nalias eth0 bnx2\n`;
    assert.equal(parseModprobeConf(ok, KMOD_DIALECT).after, 'options xen_pciback permissive\nalias eth0 bnx2\n');
  });

  void it('refuses driver names and addresses that would inject text into the file', () => {
    const conf = parseModprobeConf('', KMOD_DIALECT);
    for (const driver of ['bnx2; reboot', 'bnx2\ninstall e1000e /bin/sh', '', 'a b', 'x'.repeat(65)]) {
      assert.throws(
        () => withHidden(conf, '0000:09:00.0', driver),
        (err: unknown) => err instanceof PtcError && err.code === ErrorCode.INVALID_INPUT,
        JSON.stringify(driver),
      );
    }
    for (const bdf of ['0000:09:00.0)(0000:0a:00.0', '09:00.0', '0000:09:00.0\nalias x y', '']) {
      assert.throws(
        () => withHidden(conf, bdf, 'bnx2'),
        (err: unknown) => err instanceof PtcError && err.code === ErrorCode.INVALID_INPUT,
        JSON.stringify(bdf),
      );
    }
  });

  const malformed: readonly (readonly [string, string, RegExp])[] = [
    ['BEGIN without END', `alias eth0 bnx2\n${BEGIN}\n${installLine('bnx2', RHEL5_DIALECT)}\n`, /no END marker/],
    ['END without BEGIN', `alias eth0 bnx2\n${END}\n`, /END marker without its BEGIN/],
    ['END before BEGIN', `${END}\n${BEGIN}\n`, /no END marker/],
    ['junk inside the block', `${BEGIN}\n${installLine('bnx2', RHEL5_DIALECT)}\nalias eth0 bnx2\n${END}\n`, /unexpected line inside the ptctl block/],
    ['a comment inside the block', `${BEGIN}\n# hand edit\n${END}\n`, /unexpected line/],
    ['an empty line inside the block', `${BEGIN}\n\n${END}\n`, /unexpected line/],
    ['a CRLF line inside the block', `${BEGIN}\noptions pciback hide=(0000:09:00.0)\r\n${END}\n`, /unexpected line|hide=/],
    ['two blocks', `${BEGIN}\n${END}\nalias eth0 bnx2\n${BEGIN}\n${END}\n`, /more than one ptctl block/],
    ['two blocks, the second with an added break', `${BEGIN}\n${END}\nx\n${BEGIN_ADDED}\n${END}\n`, /more than one ptctl block/],
    ['two hide= lines in the block', `${BEGIN}\noptions pciback hide=(0000:09:00.0)\noptions pciback hide=(0000:0a:04.1)\n${END}\n`, /unexpected line/],
    ['an install line whose drivers differ', `${BEGIN}\ninstall bnx2 /sbin/modprobe pciback; /sbin/modprobe --first-time --ignore-install tg3\n${END}\n`, /unexpected line/],
    ['an install line with another modprobe path', `${BEGIN}\ninstall bnx2 /usr/sbin/modprobe pciback; /usr/sbin/modprobe --first-time --ignore-install bnx2\n${END}\n`, /unexpected line/],
    ['a hide list without parentheses', `${BEGIN}\noptions pciback hide=0000:09:00.0\n${END}\n`, /hide= must be a list/],
    ['an unterminated hide list', `${BEGIN}\noptions pciback hide=(0000:09:00.0\n${END}\n`, /hide= must be a list/],
    ['a short BDF in the hide list', `${BEGIN}\noptions pciback hide=(09:00.0)\n${END}\n`, /not a PCI address/],
    ['a device number out of range', `${BEGIN}\noptions pciback hide=(0000:09:20.0)\n${END}\n`, /not a PCI address/],
    ['a malformed foreign hide= line', 'options pciback hide=0000:05:00.0\n', /outside the ptctl block/],
    ['a foreign hide= line with a short BDF', 'options pciback hide=(05:00.0)\n', /not a PCI address/],
  ];
  for (const [name, text, pattern] of malformed) {
    void it(`throws COMMAND_FAILED for ${name}`, () => {
      assert.throws(() => parseModprobeConf(text, RHEL5_DIALECT), isMalformed(pattern));
    });
  }

  void it('an empty block is removed on the next render', () => {
    const text = `alias eth0 bnx2\n${BEGIN}\n${END}\nalias eth1 tg3\n`;
    const conf = parseModprobeConf(text, RHEL5_DIALECT);
    assert.deepEqual(conf.managed, { hidden: [], drivers: [] });
    assert.equal(renderModprobeConf(conf, RHEL5_DIALECT), 'alias eth0 bnx2\nalias eth1 tg3\n');
  });

  void it('normalises upper-case hex in foreign lines to the lower case pciback uses', () => {
    const conf = parseModprobeConf('options pciback hide=(0000:0A:04.1)\n', RHEL5_DIALECT);
    assert.deepEqual(conf.foreignHidden, ['0000:0a:04.1']);
  });
});

for (const [name, d] of DIALECTS) {
  void describe(`modprobe-conf properties (${name})`, () => {
    void it('parse(render(x)) = x for generated configs with foreign text before and after the block', () => {
      fc.assert(
        fc.property(
          arbForeignText(d),
          arbForeignText(d, { hides: false }),
          fc.array(arbBdf, { maxLength: 5 }),
          fc.array(arbDriver, { maxLength: 4 }),
          (before, after, hiddenIn, driversIn) => {
            const foreignHidden = sorted(before.hides);
            const hidden = sorted(hiddenIn).filter((b) => !foreignHidden.includes(b));
            const drivers = sorted(driversIn);
            fc.pre(hidden.length > 0 || drivers.length > 0);
            const x: ModprobeConf = {
              before: before.text,
              after: after.text,
              managed: { hidden, drivers },
              foreignHidden,
              addedLineBreak: before.text.length > 0 && !before.text.endsWith('\n'),
            };
            const text = renderModprobeConf(x, d);
            assert.equal(text, expectedFile(d, before.text, after.text, drivers, hidden, foreignHidden));
            assert.deepEqual(parseModprobeConf(text, d), x);
            assert.equal(renderModprobeConf(parseModprobeConf(text, d), d), text);
          },
        ),
        { numRuns: RUNS },
      );
    });

    void it('adding then removing devices restores the original bytes', () => {
      fc.assert(
        fc.property(
          arbForeignText(d),
          fc.uniqueArray(fc.tuple(arbBdf, arbDriver), { minLength: 1, maxLength: 4, selector: ([b]) => b }),
          fc.infiniteStream(fc.nat()),
          (original, devices, picks) => {
            const model = new Model(new Set(original.hides));
            let text = original.text;
            for (const [bdf, driver] of devices) {
              text = hideOne(text, d, bdf, driver);
              model.add(bdf, driver);
            }
            assert.notEqual(text, original.text);
            // Remove in an arbitrary order, passing the drivers the remaining devices need.
            const remaining = devices.map(([b]) => b);
            const pick = picks[Symbol.iterator]();
            while (remaining.length > 0) {
              const [bdf] = remaining.splice((pick.next().value ?? 0) % remaining.length, 1);
              assert.ok(bdf !== undefined);
              text = unhideOne(text, d, bdf, model.remove(bdf));
            }
            assert.equal(text, original.text);
          },
        ),
        { numRuns: RUNS },
      );
    });

    void it('foreign lines survive byte for byte through any sequence of adds and removes', () => {
      fc.assert(
        fc.property(
          arbForeignText(d),
          arbForeignText(d, { hides: false }),
          fc.tuple(arbBdf, arbDriver),
          fc.array(arbOp, { maxLength: 12 }),
          (before, after, [bdf0, driver0], ops) => {
            const model = new Model(new Set(before.hides));
            // ptctl wrote its block, then somebody appended lines after it.
            let text = hideOne(before.text, d, bdf0, driver0) + after.text;
            model.add(bdf0, driver0);
            const foreign = stripBlock(text);
            const foreignHidden = sorted(before.hides);
            // Where the block sits: between `head` and `tail` until it goes away; a new one goes at the end.
            let head = before.text;
            let tail = after.text;
            for (const op of ops) {
              if (op.kind === 'add') {
                text = hideOne(text, d, op.bdf, op.driver);
                model.add(op.bdf, op.driver);
              } else {
                text = unhideOne(text, d, op.bdf, model.remove(op.bdf));
              }
              assert.equal(stripBlock(text), foreign);
              assert.equal(text, expectedFile(d, head, tail, [...model.drivers], [...model.hidden], foreignHidden));
              if (model.drivers.size === 0 && model.hidden.size === 0) {
                assert.equal(text, foreign);
                head = foreign;
                tail = '';
              }
              const conf = parseModprobeConf(text, d);
              assert.deepEqual(effectiveHidden(conf), sorted([...foreignHidden, ...model.hidden]));
            }
          },
        ),
        { numRuns: RUNS },
      );
    });

    void it('keeps a stable order: sorted hide list, one install line per driver, whatever the insertion order', () => {
      const arbDevices = fc.uniqueArray(fc.tuple(arbBdf, arbDriver), { minLength: 1, maxLength: 6, selector: ([b]) => b });
      fc.assert(
        fc.property(
          arbForeignText(d),
          arbDevices.chain((devs) => fc.tuple(fc.constant(devs), fc.shuffledSubarray(devs, { minLength: devs.length, maxLength: devs.length }))),
          (original, [order1, order2]) => {
            const build = (devs: readonly (readonly [PciAddress, string])[]): string => devs.reduce((t, [b, drv]) => hideOne(t, d, b, drv), original.text);
            const text = build(order1);
            assert.equal(build(order2), text);
            const block = blockOf(text);
            const installs = block.filter((l) => l.startsWith('install '));
            const installDrivers = installs.map((l) => l.split(' ')[1] ?? '');
            assert.deepEqual(installDrivers, sorted(order1.map(([, drv]) => drv)));
            const hideLines = block.filter((l) => l.startsWith('options '));
            assert.equal(hideLines.length, 1);
            const listed = [...(hideLines[0] ?? '').matchAll(/\(([^)]*)\)/g)].map((m) => m[1] ?? '');
            assert.deepEqual(listed, sorted([...original.hides, ...order1.map(([b]) => b)]));
          },
        ),
        { numRuns: RUNS },
      );
    });

    void it('adding the same device twice is a no-op (same bytes)', () => {
      fc.assert(
        fc.property(arbForeignText(d), fc.array(fc.tuple(arbBdf, arbDriver), { maxLength: 3 }), arbBdf, arbDriver, (original, others, bdf, driver) => {
          const base = others.reduce((t, [b, drv]) => hideOne(t, d, b, drv), original.text);
          const once = hideOne(base, d, bdf, driver);
          assert.equal(hideOne(once, d, bdf, driver), once);
          // Also without going through the text in between.
          const conf = withHidden(parseModprobeConf(base, d), bdf, driver);
          assert.equal(renderModprobeConf(withHidden(conf, bdf, driver), d), once);
        }),
        { numRuns: RUNS },
      );
    });
  });
}

void describe('modprobe-conf against the real kmod parser', () => {
  void it('modprobe --showconfig -C accepts the rendered file with our install line and hide options', () => {
    // The system's modprobe, else the one `npm test`'s setup unpacked from Debian's kmod package.
    const modprobe = ['/sbin/modprobe', '/usr/sbin/modprobe', join(PROJECT_ROOT, '.tools', 'kmod', 'modprobe')].find((p) => existsSync(p));
    if (modprobe === undefined) {
      assert.fail(
        'kmod is required for this test: neither /sbin/modprobe nor /usr/sbin/modprobe exists. ' +
          "Run `npm test` (its setup unpacks Debian's kmod into .tools/kmod) or install kmod (apt-get install kmod).",
      );
    }
    const dir = mkdtempSync(join(tmpdir(), 'ptctl-modprobe-'));
    try {
      for (const [name, d] of DIALECTS) {
        // A driver name no machine has, so the dry run cannot be disturbed by what the host has loaded.
        const fake = 'ptctl_test_drv';
        let text = '# hand-written\nalias eth0 bnx2\n';
        text = hideOne(text, d, '0000:0a:04.1', 'bnx2');
        text = hideOne(text, d, '0000:09:00.0', 'bnx2');
        text = hideOne(text, d, '0000:00:19.0', fake);
        const file = join(dir, `${name}.conf`);
        writeFileSync(file, text);
        const errFile = join(dir, `${name}.stderr`);
        const errFd = openSync(errFile, 'w');
        let out: string;
        let dry: string;
        try {
          out = execFileSync(modprobe, ['--showconfig', '-C', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', errFd] });
          dry = execFileSync(modprobe, ['-n', '-v', '-C', file, fake], { encoding: 'utf8', stdio: ['ignore', 'pipe', errFd] });
        } finally {
          closeSync(errFd);
        }
        const lines = out.split('\n');
        // kmod prints module names with '_' for '-'; the install command itself is printed verbatim.
        assert.ok(lines.includes(installLine('bnx2', d)), `${name}: install line missing from:\n${out}`);
        assert.ok(lines.includes(installLine(fake, d)), `${name}: install line missing from:\n${out}`);
        assert.ok(lines.includes(`options ${d.module.replace(/-/g, '_')} hide=(0000:00:19.0)(0000:09:00.0)(0000:0a:04.1)`), `${name}: hide options missing from:\n${out}`);
        assert.ok(lines.includes('alias eth0 bnx2'), `${name}: foreign alias missing from:\n${out}`);
        // The dry run shows the command modprobe would run for the driver: pciback first.
        assert.equal(dry.trim(), `install ${d.modprobe} ${d.module}; ${d.modprobe} --first-time --ignore-install ${fake}`);
        // kmod reports lines it ignores ("ignoring bad line") on stderr: there must be none.
        assert.doesNotMatch(readFileSync(errFile, 'utf8'), /bad line|ERROR/, `${name}: kmod complained about the rendered file`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
