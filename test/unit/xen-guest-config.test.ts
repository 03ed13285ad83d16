import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type GuestConfig, parseGuestConfig, renderGuestConfig, withGuestDevice, withoutGuestDevice } from '../../agent/xen-guest-config.js';
import { ErrorCode, PtcError } from '../../schemas/errors.js';
import type { PciAddress } from '../../schemas/pci-address.js';

const RUNS = 200;

// ---------------------------------------------------------------------------------------------
// Helpers and independent oracles
// ---------------------------------------------------------------------------------------------

function sorted(items: Iterable<string>): string[] {
  return [...new Set(items)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function add(text: string, bdf: PciAddress): string {
  return renderGuestConfig(withGuestDevice(parseGuestConfig(text), bdf));
}

function remove(text: string, bdf: PciAddress): string {
  return renderGuestConfig(withoutGuestDevice(parseGuestConfig(text), bdf));
}

/** The line ptctl writes, spelled out from the format rather than taken from the module. */
function pciLine(devices: readonly string[]): string {
  return `pci = [ ${devices.map((d) => `'${d}'`).join(', ')} ]`;
}

/** Any line xl would read as a pci setting (xl's lexer skips blanks anywhere). */
const XL_PCI_SETTING = /^\s*pci\s*\+?=/;

/** The file with its pci setting line cut out. */
function withoutPciLine(text: string): string {
  return text
    .split('\n')
    .filter((l) => !XL_PCI_SETTING.test(l))
    .join('\n');
}

function isRefused(pattern?: RegExp): (err: unknown) => boolean {
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
const BDF_POOL: readonly PciAddress[] = ['0000:01:00.0', '0000:01:00.1', '0000:00:19.0', '0000:0a:04.1', '0001:ff:1f.7'];
const arbBdf: fc.Arbitrary<PciAddress> = fc.oneof(
  fc.constantFrom(...BDF_POOL),
  fc
    .tuple(fc.constantFrom('0000', '0001', 'ffff'), hex(2, 0xff), fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0, max: 7 }))
    .map(([dom, bus, dev, fn]) => `${dom}:${bus}:${dev.toString(16).padStart(2, '0')}.${fn}`),
);

/** Lines of an xl config that are not a pci setting, some deliberately close to one. */
const arbOtherLine: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    '  ',
    '#',
    "name = 'guest1'",
    'memory = 1024',
    'vcpus = 2',
    "builder = 'hvm'",
    "vif = [ 'bridge=xenbr0' ]",
    "disk = [ 'phy:/dev/vg0/guest1,xvda,w' ]",
    "# pci = [ '0000:07:00.0' ]",
    '#pci=[]',
    'pci_permissive = 1',
    'pci_msitranslate = 0',
    "pcidev = [ '0000:07:00.0' ]",
    "rdm = 'strategy=host,policy=relaxed'",
    "extra = 'console=hvc0 pci=nomsi'",
    "on_crash = 'restart'",
  ),
  fc
    .string({ unit: fc.oneof(fc.constantFrom(' ', '\t', '\r', '=', '[', ']', "'", 'p', 'c', 'i'), fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 })), maxLength: 24 })
    .filter((s) => !s.includes('\n') && !XL_PCI_SETTING.test(s)),
);

/** An xl config without a pci setting: possibly empty, with or without a final newline. */
const arbOtherText: fc.Arbitrary<string> = fc
  .record({ lines: fc.array(arbOtherLine, { maxLength: 8 }), trailingNewline: fc.boolean() })
  .map(({ lines, trailingNewline }) => lines.join('\n') + (trailingNewline && lines.length > 0 ? '\n' : ''));

/** A hand-written one-line pci setting with unique devices, in any order, quoting and spacing. */
const arbHandPciLine: fc.Arbitrary<{ line: string; devices: PciAddress[] }> = fc
  .record({
    devices: fc.uniqueArray(arbBdf, { maxLength: 4 }),
    lead: fc.constantFrom('', ' ', '\t'),
    eq: fc.constantFrom('=', ' = ', '  =\t'),
    quote: fc.constantFrom("'", '"'),
    sep: fc.constantFrom(',', ', ', ' ,  '),
    inner: fc.constantFrom('', ' '),
    tail: fc.constantFrom('', ' ', '\t'),
    upper: fc.boolean(),
  })
  .map(({ devices, lead, eq, quote, sep, inner, tail, upper }) => ({
    line: `${lead}pci${eq}[${inner}${devices.map((d) => `${quote}${upper ? d.toUpperCase() : d}${quote}`).join(sep)}${inner}]${tail}`,
    devices,
  }));

type Op = { readonly kind: 'add' | 'remove'; readonly bdf: PciAddress };
const arbOp: fc.Arbitrary<Op> = fc.record({ kind: fc.constantFrom('add' as const, 'remove' as const), bdf: arbBdf });

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

void describe('xen-guest-config: table tests', () => {
  void it('adds a pci line to an empty file and removes it again', () => {
    const text = add('', '0000:01:00.0');
    assert.equal(text, "pci = [ '0000:01:00.0' ]\n");
    assert.equal(remove(text, '0000:01:00.0'), '');
  });

  void it('appends the pci line before the final newline, and keeps a missing final newline missing', () => {
    assert.equal(add("name = 'g'\nmemory = 512\n", '0000:01:00.0'), "name = 'g'\nmemory = 512\npci = [ '0000:01:00.0' ]\n");
    assert.equal(remove("name = 'g'\nmemory = 512\npci = [ '0000:01:00.0' ]\n", '0000:01:00.0'), "name = 'g'\nmemory = 512\n");
    assert.equal(add("name = 'g'\nmemory = 512", '0000:01:00.0'), "name = 'g'\nmemory = 512\npci = [ '0000:01:00.0' ]");
    assert.equal(remove("name = 'g'\nmemory = 512\npci = [ '0000:01:00.0' ]", '0000:01:00.0'), "name = 'g'\nmemory = 512");
  });

  void it("edits an existing pci = [ '0000:01:00.0' ] line in place", () => {
    const original = "name = 'g'\npci = [ '0000:01:00.0' ]\nmemory = 512\n";
    const conf = parseGuestConfig(original);
    assert.equal(conf.pciLineIndex, 1);
    assert.deepEqual(conf.devices, ['0000:01:00.0']);
    const two = add(original, '0000:00:19.0');
    assert.equal(two, "name = 'g'\npci = [ '0000:00:19.0', '0000:01:00.0' ]\nmemory = 512\n");
    assert.equal(remove(two, '0000:00:19.0'), original);
    // Removing the last device removes the line.
    assert.equal(remove(original, '0000:01:00.0'), "name = 'g'\nmemory = 512\n");
    // Removing a device that is not there leaves the file alone.
    assert.equal(remove(original, '0000:02:00.0'), original);
  });

  void it('reads hand-written spellings: no spaces, double quotes, upper-case hex, an empty list', () => {
    assert.deepEqual(parseGuestConfig("pci=['0000:01:00.0','0000:0A:04.1']").devices, ['0000:01:00.0', '0000:0a:04.1']);
    assert.deepEqual(parseGuestConfig('pci = [ "0000:01:00.0" ]\n').devices, ['0000:01:00.0']);
    const empty = parseGuestConfig("name = 'g'\npci = []\n");
    assert.equal(empty.pciLineIndex, 1);
    assert.deepEqual(empty.devices, []);
    assert.equal(add("name = 'g'\npci = []\n", '0000:01:00.0'), "name = 'g'\npci = [ '0000:01:00.0' ]\n");
  });

  void it('finds an indented pci line (xl skips blanks) instead of adding a second one that would replace it', () => {
    const original = "name = 'g'\n  pci = [ '0000:01:00.0' ]\n";
    const conf = parseGuestConfig(original);
    assert.equal(conf.pciLineIndex, 1);
    assert.deepEqual(conf.devices, ['0000:01:00.0']);
    assert.equal(add(original, '0000:00:19.0'), "name = 'g'\npci = [ '0000:00:19.0', '0000:01:00.0' ]\n");
  });

  void it('keeps devices sorted and unique', () => {
    let text = '';
    for (const bdf of ['0000:0a:04.1', '0000:01:00.0', '0001:00:00.0', '0000:01:00.0', '0000:00:19.0'] as const) text = add(text, bdf);
    assert.equal(text, `${pciLine(['0000:00:19.0', '0000:01:00.0', '0000:0a:04.1', '0001:00:00.0'])}\n`);
    // A hand-written unsorted line becomes sorted on the next add.
    assert.equal(add("pci = [ '0000:0a:04.1', '0000:01:00.0' ]\n", '0000:00:19.0'), `${pciLine(['0000:00:19.0', '0000:01:00.0', '0000:0a:04.1'])}\n`);
  });

  const refused: readonly (readonly [string, string, RegExp])[] = [
    ['a multi-line pci list', "pci = [ '0000:01:00.0',\n        '0000:02:00.0' ]\n", /one line/],
    ['a pci list opened on the next line', "pci =\n  [ '0000:01:00.0' ]\n", /one line/],
    ['a comment after the list', "pci = [ '0000:01:00.0' ] # nic\n", /one line/],
    ['two pci lines', "pci = [ '0000:01:00.0' ]\npci = [ '0000:02:00.0' ]\n", /more than one/],
    ['a pci += line', "pci = [ '0000:01:00.0' ]\npci += [ '0000:02:00.0' ]\n", /more than one|one line/],
    ['per-device options after a comma', "pci = [ '0000:01:00.0,permissive=1' ]\n", /not a plain PCI address/],
    ['per-device options after @', "pci = [ '0000:01:00.0@4' ]\n", /not a plain PCI address/],
    ['a BDF without domain', "pci = [ '01:00.0' ]\n", /not a plain PCI address/],
    ['a device number out of range', "pci = [ '0000:01:20.0' ]\n", /not a plain PCI address/],
    ['a function number out of range', "pci = [ '0000:01:00.8' ]\n", /not a plain PCI address/],
    ['a word', "pci = [ 'nic0' ]\n", /not a plain PCI address/],
    ['mismatched quotes', "pci = [ '0000:01:00.0\" ]\n", /not a plain PCI address/],
    ['a trailing comma', "pci = [ '0000:01:00.0', ]\n", /not a plain PCI address/],
    ['an empty item', "pci = [ '0000:01:00.0',, '0000:02:00.0' ]\n", /not a plain PCI address/],
  ];
  for (const [name, text, pattern] of refused) {
    void it(`refuses ${name} with COMMAND_FAILED`, () => {
      assert.throws(() => parseGuestConfig(text), isRefused(pattern));
    });
  }

  void it('refuses to write an address that is not a plain BDF into the config', () => {
    const conf = parseGuestConfig("name = 'g'\n");
    for (const bdf of ["0000:01:00.0' ]\nbootloader = '/bin/sh", '01:00.0', '', '0000:01:00.0,permissive=1']) {
      assert.throws(
        () => withGuestDevice(conf, bdf),
        (err: unknown) => err instanceof PtcError && err.code === ErrorCode.INVALID_INPUT,
        JSON.stringify(bdf),
      );
    }
  });
});

void describe('xen-guest-config properties', () => {
  void it('adding then removing devices restores the original bytes', () => {
    fc.assert(
      fc.property(
        arbOtherText,
        fc.uniqueArray(arbBdf, { minLength: 1, maxLength: 4 }).chain((devs) => fc.tuple(fc.constant(devs), fc.shuffledSubarray(devs, { minLength: devs.length, maxLength: devs.length }))),
        (original, [addOrder, removeOrder]) => {
          let text = original;
          for (const bdf of addOrder) text = add(text, bdf);
          assert.equal(withoutPciLine(text), original);
          assert.deepEqual(parseGuestConfig(text).devices, sorted(addOrder));
          for (const bdf of removeOrder) text = remove(text, bdf);
          assert.equal(text, original);
        },
      ),
      { numRuns: RUNS },
    );
  });

  void it('edits an existing pci line in place: other lines untouched, devices sorted and unique', () => {
    fc.assert(
      fc.property(arbOtherText, arbHandPciLine, arbOtherText, fc.array(arbOp, { maxLength: 10 }), (head, hand, tail, ops) => {
        const lead = head.length === 0 || head.endsWith('\n') ? head : `${head}\n`;
        const original = `${lead}${hand.line}\n${tail}`;
        const others = withoutPciLine(original);
        const initial = parseGuestConfig(original);
        assert.equal(initial.pciLineIndex, lead.split('\n').length - 1);
        assert.deepEqual(initial.devices, hand.devices);
        // The model: devices in the file's order until ptctl adds one, then sorted.
        let model: string[] = [...hand.devices];
        let text = original;
        let lineIndex: number | null = initial.pciLineIndex;
        for (const op of ops) {
          const added = op.kind === 'add' && !model.includes(op.bdf);
          if (op.kind === 'add') {
            text = add(text, op.bdf);
            if (added) model = sorted([...model, op.bdf]);
          } else {
            text = remove(text, op.bdf);
            model = model.filter((b) => b !== op.bdf);
          }
          const conf = parseGuestConfig(text);
          assert.deepEqual(conf.devices, model);
          assert.equal(new Set(conf.devices).size, conf.devices.length);
          if (added) assert.deepEqual(conf.devices, sorted(conf.devices));
          // Every other line is kept byte for byte and in order.
          assert.equal(withoutPciLine(text), others);
          if (model.length === 0) {
            assert.equal(conf.pciLineIndex, null);
            lineIndex = null;
          } else {
            // In place while the line exists; a new line goes at the end.
            if (lineIndex !== null) assert.equal(conf.pciLineIndex, lineIndex);
            lineIndex = conf.pciLineIndex;
            // Any edit rewrites the line in ptctl's spelling.
            assert.equal(text.split('\n')[lineIndex ?? -1], pciLine(model));
          }
        }
      }),
      { numRuns: RUNS },
    );
  });

  void it('adding a device that is already there changes nothing', () => {
    fc.assert(
      fc.property(arbOtherText, fc.array(arbBdf, { maxLength: 4 }), arbBdf, (original, others, bdf) => {
        const base = others.reduce(add, original);
        const once = add(base, bdf);
        assert.equal(add(once, bdf), once);
        const conf: GuestConfig = withGuestDevice(parseGuestConfig(base), bdf);
        assert.equal(withGuestDevice(conf, bdf), conf);
      }),
      { numRuns: RUNS },
    );
  });

  void it('parse then render without changes keeps a ptctl-written file byte for byte', () => {
    fc.assert(
      fc.property(arbOtherText, fc.array(arbBdf, { maxLength: 4 }), (original, devices) => {
        const text = devices.reduce(add, original);
        assert.equal(renderGuestConfig(parseGuestConfig(text)), text);
      }),
      { numRuns: RUNS },
    );
  });
});
