import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { addressesMentioned, type GuestConfig, guestDeviceSpec, parseGuestConfig, renderGuestConfig, withGuestDevice, withoutGuestDevice } from '../../agent/xen-guest-config.js';
import { guestConfigDevices } from '../../agent/xen-guest-config.js';
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
    assert.equal(err.code, ErrorCode.GUEST_CONFIG_INVALID);
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
    // Unbalanced brackets make xl refuse the file (and ptctl too: GUEST_CONFIG_INVALID); tested on their own below.
    .filter((s) => !s.includes('\n') && !XL_PCI_SETTING.test(s) && !/[[\]()]/.test(s)),
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
    // Only the setting's bytes change: its indentation is outside it and stays.
    assert.equal(add(original, '0000:00:19.0'), "name = 'g'\n  pci = [ '0000:00:19.0', '0000:01:00.0' ]\n");
  });

  void it('keeps devices sorted and unique', () => {
    let text = '';
    for (const bdf of ['0000:0a:04.1', '0000:01:00.0', '0001:00:00.0', '0000:01:00.0', '0000:00:19.0'] as const) text = add(text, bdf);
    assert.equal(text, `${pciLine(['0000:00:19.0', '0000:01:00.0', '0000:0a:04.1', '0001:00:00.0'])}\n`);
    // A hand-written unsorted line becomes sorted on the next add.
    assert.equal(add("pci = [ '0000:0a:04.1', '0000:01:00.0' ]\n", '0000:00:19.0'), `${pciLine(['0000:00:19.0', '0000:01:00.0', '0000:0a:04.1'])}\n`);
  });

  const refused: readonly (readonly [string, string, RegExp])[] = [
    ['a pci list opened on the next line', "pci =\n  [ '0000:01:00.0' ]\n", /list on the line/],
    ['a pci list never closed', "pci = [ '0000:01:00.0',\n", /never closed/],
    ['two pci lines', "pci = [ '0000:01:00.0' ]\npci = [ '0000:02:00.0' ]\n", /more than one/],
    ['a pci += line', "pci = [ '0000:01:00.0' ]\npci += [ '0000:02:00.0' ]\n", /more than one|\+=/],
    ['a pci string instead of a list', "pci = '0000:01:00.0'\n", /must be a list/],
    ['an option that is not key=value', "pci = [ '0000:01:00.0,permissive' ]\n", /not key=value/],
    ['a VSLOT that is not hex', "pci = [ '0000:01:00.0@zz' ]\n", /not \[DDDD:\]BB:DD.F/],
    ['a device number out of range', "pci = [ '0000:01:20.0' ]\n", /out of range/],
    ['a function number out of range', "pci = [ '0000:01:00.8' ]\n", /not \[DDDD/],
    ['a word', "pci = [ 'nic0' ]\n", /not \[DDDD/],
    ['mismatched quotes', "pci = [ '0000:01:00.0\" ]\n", /unterminated/],
    ['a list broken by a stray quote on the next line', "pci = [ '0000:01:00.0',\n  ' ]\n", /unterminated/],
    ['an empty item', "pci = [ '0000:01:00.0',, '0000:02:00.0' ]\n", /empty item/],
    ['items without a comma', "pci = [ '0000:01:00.0' '0000:02:00.0' ]\n", /separated by commas/],
    ['a device listed twice', "pci = [ '0000:01:00.0', '01:00.0' ]\n", /twice/],
    ['an unbalanced bracket before the setting', "disk = [ 'phy:/dev/x,xvda,w'\npci = [ '0000:01:00.0' ]\n", /unbalanced/],
    ['a backslash escape', 'pci = [ "0000:01:00.0\\n" ]\n', /backslash/],
    ['a key=value item without bdf', "pci = [ 'permissive=1' ]\n", /no bdf=/],
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
        let spelledByPtctl = false;
        for (const op of ops) {
          const added = op.kind === 'add' && !model.includes(op.bdf);
          const prev = text;
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
            // A no-op edit of a hand-written empty list leaves the file alone; an edit that empties the list removes it.
            assert.ok(conf.pciLineIndex === null || text === original, text);
            lineIndex = conf.pciLineIndex;
          } else {
            // In place while the line exists; a new line goes at the end.
            if (lineIndex !== null) assert.equal(conf.pciLineIndex, lineIndex);
            lineIndex = conf.pciLineIndex;
            // Any edit rewrites the setting in ptctl's spelling (a no-op leaves the file alone); the blanks around it are not part of it.
            spelledByPtctl ||= text !== prev;
            if (spelledByPtctl) assert.equal((text.split('\n')[lineIndex ?? -1] ?? '').trim(), pciLine(model));
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

// ---------------------------------------------------------------------------------------------
// The grammar xl and xm accept (issue 10): multi-line lists, comments, short BDFs, @VSLOT, options
// ---------------------------------------------------------------------------------------------

void describe('xen-guest-config: the xl grammar', () => {
  const multi = [
    "name = 'g'",
    'pci = [',
    '    # the GPU and its audio function',
    "    '03:00.0@4,permissive=1,msitranslate=1',",
    '    "0000:03:00.1,seize=1", # audio',
    ']',
    'memory = 512 # MiB',
    '',
  ].join('\n');

  void it('reads a multi-line list with comments, short BDFs, VSLOTs and options', () => {
    const conf = parseGuestConfig(multi);
    assert.deepEqual(conf.devices, ['0000:03:00.0', '0000:03:00.1']);
    assert.equal(conf.pciLineIndex, 1);
    assert.equal(guestDeviceSpec(conf, '0000:03:00.0'), '0000:03:00.0@4,permissive=1,msitranslate=1');
    assert.equal(guestDeviceSpec(conf, '0000:03:00.1'), '0000:03:00.1,seize=1');
  });

  void it('keeps per-device options and comments when it rewrites the list, and every byte outside it', () => {
    const added = add(multi, '0000:01:00.0');
    assert.equal(
      added,
      [
        "name = 'g'",
        'pci = [',
        "    '0000:01:00.0',",
        '    # the GPU and its audio function',
        "    '0000:03:00.0@4,permissive=1,msitranslate=1',",
        "    '0000:03:00.1,seize=1', # audio",
        ']',
        'memory = 512 # MiB',
        '',
      ].join('\n'),
    );
    const removed = remove(added, '0000:03:00.1');
    assert.deepEqual(parseGuestConfig(removed).devices, ['0000:01:00.0', '0000:03:00.0']);
    assert.equal(guestDeviceSpec(parseGuestConfig(removed), '0000:03:00.0'), '0000:03:00.0@4,permissive=1,msitranslate=1');
    // Removing every device removes the setting (and its lines), nothing else.
    const none = ['0000:01:00.0', '0000:03:00.0'].reduce(remove, removed);
    assert.equal(none, "name = 'g'\nmemory = 512 # MiB\n");
  });

  void it('edits a one-line list with options in place, keeping a comment and statements after it', () => {
    const text = "pci = [ '0000:01:00.0,permissive=1' ] # nic; kept\nvcpus = 2; memory = 512\n";
    assert.equal(add(text, '0000:00:19.0'), "pci = [ '0000:00:19.0', '0000:01:00.0,permissive=1' ] # nic; kept\nvcpus = 2; memory = 512\n");
    assert.equal(remove(text, '0000:01:00.0'), 'pci = [ ] # nic; kept\nvcpus = 2; memory = 512\n');
    const shared = "memory = 512; pci = [ '0000:01:00.0' ]; vcpus = 2\n";
    assert.deepEqual(parseGuestConfig(shared).devices, ['0000:01:00.0']);
    assert.equal(remove(shared, '0000:01:00.0'), 'memory = 512; pci = [ ]; vcpus = 2\n');
  });

  void it('accepts a trailing comma, an empty multi-line list and the key=value form', () => {
    assert.deepEqual(parseGuestConfig("pci = [ '0000:01:00.0', ]\n").devices, ['0000:01:00.0']);
    assert.deepEqual(parseGuestConfig('pci = [\n]\n').devices, []);
    const kv = parseGuestConfig("pci = [ 'bdf=01:00.0,permissive=1' ]\n");
    assert.deepEqual(kv.devices, ['0000:01:00.0']);
    assert.equal(guestDeviceSpec(kv, '0000:01:00.0'), 'bdf=0000:01:00.0,permissive=1');
  });

  void it('is not fooled by pci in comments, strings, other settings or nested lists', () => {
    const text = [
      "# pci = [ '0000:07:00.0' ]",
      "extra = 'pci = [ 0000:07:00.0 ]'",
      "pcidev = [ '0000:07:00.0' ]",
      'pci_permissive = 1',
      "vif = [ 'mac=00:16:3e:00:00:01,bridge=xenbr0' ]",
      "disk = [ 'phy:/dev/vg/g,xvda,w',",
      "         'file:/x.img,xvdb,r' ]",
      '',
    ].join('\n');
    const conf = parseGuestConfig(text);
    assert.equal(conf.pciLineIndex, null);
    assert.deepEqual(conf.devices, []);
    assert.equal(remove(add(text, '0000:01:00.0'), '0000:01:00.0'), text);
  });

  void it('names every address a file mentions (what an unparseable config may hold)', () => {
    assert.deepEqual(addressesMentioned("pci = [ '03:00.0@4' '0000:0A:04.1,permissive=1' ]\n# 0001:02:03.4\nmac=00:16:3e:00:00:01"), ['0000:03:00.0', '0000:0a:04.1', '0001:02:03.4']);
  });
});

void describe('xen-guest-config: grammar properties', () => {
  /** One list item as an operator might write it. */
  const arbItem = fc.record({
    bdf: arbBdf,
    shortForm: fc.boolean(),
    upper: fc.boolean(),
    vslot: fc.option(fc.integer({ min: 0, max: 0x1f }), { nil: undefined }),
    options: fc.subarray(['permissive=1', 'msitranslate=1', 'seize=1', 'power_mgmt=0', 'rdm_policy=relaxed'], { maxLength: 3 }),
    quote: fc.constantFrom("'", '"'),
    commentBefore: fc.option(fc.constantFrom('# gpu', '#', "# pci = [ '0000:09:00.0' ]"), { nil: undefined }),
    comment: fc.option(fc.constantFrom('# audio', '# x, y ]'), { nil: undefined }),
  });
  const arbList = fc
    .record({
      items: fc.uniqueArray(arbItem, { maxLength: 4, selector: (i) => i.bdf }),
      multiLine: fc.boolean(),
      trailingComma: fc.boolean(),
      lead: fc.constantFrom('', '  '),
      after: fc.constantFrom('', ' # devices', '; vcpus = 2'),
    })
    .filter(({ items, multiLine }) => multiLine || items.every((i) => i.comment === undefined && i.commentBefore === undefined))
    .filter(({ items }) => items.every((i) => !i.shortForm || i.bdf.startsWith('0000:')))
    .map(({ items, multiLine, trailingComma, lead, after }) => {
      const written = items.map((i) => {
        const b = i.shortForm ? i.bdf.slice(5) : i.bdf;
        const spec = `${i.upper ? b.toUpperCase() : b}${i.vslot === undefined ? '' : `@${i.vslot.toString(16)}`}${i.options.map((o) => `,${o}`).join('')}`;
        const normal = `${i.bdf}${i.vslot === undefined ? '' : `@${i.vslot.toString(16)}`}${i.options.map((o) => `,${o}`).join('')}`;
        return { ...i, text: `${i.quote}${spec}${i.quote}`, normal };
      });
      let body: string;
      if (multiLine) {
        const lines = written.map((w, n) => `${w.commentBefore === undefined ? '' : `    ${w.commentBefore}\n`}    ${w.text}${n < written.length - 1 || trailingComma ? ',' : ''}${w.comment === undefined ? '' : ` ${w.comment}`}`);
        body = `[\n${lines.map((l) => `${l}\n`).join('')}]`;
      } else {
        body = `[ ${written.map((w) => w.text).join(', ')}${trailingComma && written.length > 0 ? ',' : ''} ]`;
      }
      return { text: `${lead}pci = ${body}${after}`, specs: new Map(written.map((w) => [w.bdf, w.normal])) };
    });

  void it('reads every generated list, and every edit keeps the options of the devices that stay and every byte outside the setting', () => {
    fc.assert(
      fc.property(arbOtherText, arbList, arbOtherText, fc.array(arbOp, { maxLength: 8 }), (head, list, tail, ops) => {
        const lead = head.length === 0 || head.endsWith('\n') ? head : `${head}\n`;
        const original = `${lead}${list.text}\n${tail}`;
        const conf = parseGuestConfig(original);
        assert.deepEqual([...conf.devices].sort(), [...list.specs.keys()].sort());
        for (const [bdf, spec] of list.specs) assert.equal(guestDeviceSpec(conf, bdf), spec);
        let text = original;
        const specs = new Map(list.specs);
        let removedOnce = false;
        for (const op of ops) {
          if (op.kind === 'add' && !specs.has(op.bdf)) specs.set(op.bdf, op.bdf);
          if (op.kind === 'remove') specs.delete(op.bdf);
          text = op.kind === 'add' ? add(text, op.bdf) : remove(text, op.bdf);
          const now = parseGuestConfig(text);
          assert.deepEqual([...now.devices].sort(), [...specs.keys()].sort());
          for (const [bdf, spec] of specs) assert.equal(guestDeviceSpec(now, bdf), spec, `options of ${bdf} kept`);
          // The bytes around the setting never change (once emptied and removed, a new setting goes at the end).
          removedOnce ||= now.pciLineIndex === null;
          assert.ok(text.startsWith(lead), 'the lines before the pci setting are kept');
          if (!removedOnce) assert.ok(text.endsWith(tail), 'the lines after the pci setting are kept');
        }
      }),
      { numRuns: RUNS },
    );
  });

  void it('a rendered config parses back to the same items', () => {
    fc.assert(
      fc.property(arbList, fc.array(arbOp, { maxLength: 6 }), (list, ops) => {
        let conf = parseGuestConfig(`${list.text}\n`);
        for (const op of ops) conf = op.kind === 'add' ? withGuestDevice(conf, op.bdf) : withoutGuestDevice(conf, op.bdf);
        const back = parseGuestConfig(renderGuestConfig(conf));
        assert.deepEqual(back.items.map((i) => [i.bdf, i.spec, i.comment, i.commentsBefore]), conf.items.map((i) => [i.bdf, i.spec, i.comment, i.commentsBefore]));
      }),
      { numRuns: RUNS },
    );
  });

  void it('any text either parses or is refused with GUEST_CONFIG_INVALID, and its guest is fenced rather than breaking the scan', () => {
    const arbNoise = fc.string({ unit: fc.constantFrom('p', 'c', 'i', ' ', '=', '+', '[', ']', "'", '"', ',', '#', '\n', ';', '0', ':', '.', '1', '@', '\\'), maxLength: 40 });
    fc.assert(
      fc.property(arbNoise, (text) => {
        let parsed = true;
        try {
          parseGuestConfig(text);
        } catch (err) {
          assert.ok(err instanceof PtcError && err.code === ErrorCode.GUEST_CONFIG_INVALID, String(err));
          parsed = false;
        }
        const read = guestConfigDevices(text);
        assert.equal(read.configProblem === null, parsed);
      }),
      { numRuns: 2000 },
    );
  });
});
