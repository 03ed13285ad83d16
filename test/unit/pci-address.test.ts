import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compareBdf, PciAddress } from '../../schemas/pci-address.js';
import { GuestName, HostId } from '../../schemas/ids.js';
import fc from 'fast-check';
import { asBdf } from '../../agent/linux/pci-sysfs.js';

// A PCI address ends up as a sysfs path component, a file name and an argv element: the schema is the
// only thing between user input and those places, so both directions are pinned down here.

const ACCEPTED: readonly (readonly [input: string, normalised: string])[] = [
  ['0000:09:00.0', '0000:09:00.0'],
  ['0000:0A:04.1', '0000:0a:04.1'],
  ['0000:0a:04.1', '0000:0a:04.1'],
  ['0000:00:00.0', '0000:00:00.0'],
  ['FFFF:FF:1F.7', 'ffff:ff:1f.7'],
  ['0001:ab:1e.3', '0001:ab:1e.3'],
];

const REJECTED: readonly (readonly [why: string, input: string])[] = [
  ['no domain', '09:00.0'],
  ['function above 7', '0000:09:00.8'],
  ['device above 1f', '0000:09:20.0'],
  ['device ff', '0000:09:ff.0'],
  ['shell metacharacters after a valid address', '0000:09:00.0;reboot'],
  ['leading space', ' 0000:09:00.0'],
  ['trailing space', '0000:09:00.0 '],
  ['trailing newline', '0000:09:00.0\n'],
  ['path traversal', '../../etc'],
  ['empty', ''],
  ['13 characters (two-digit function)', '0000:09:00.00'],
  ['13 characters (five-digit domain)', '00000:09:00.0'],
  ['very long', `0000:09:00.0${'0'.repeat(100)}`],
  ['non-hex digit', '0000:0g:00.0'],
  ['dashes instead of colons', '0000-09-00.0'],
  ['colon instead of dot', '0000:09:00:0'],
  ['3-digit bus padded by a shorter domain', '000:009:00.0'],
  ['slash', '0000/09:00.0'],
  ['unicode digit', '0000:09:00.\u0660'],
];

void describe('PciAddress', () => {
  for (const [input, normalised] of ACCEPTED) {
    void it(`accepts ${JSON.stringify(input)} as ${normalised}`, () => {
      const parsed = PciAddress.safeParse(input);
      assert.ok(parsed.success, `expected ${JSON.stringify(input)} to be accepted: ${parsed.error?.message ?? ''}`);
      assert.equal(parsed.data, normalised);
      // A normalised address parses to itself: safe to re-validate anywhere.
      assert.equal(PciAddress.parse(parsed.data), normalised);
    });
  }

  for (const [why, input] of REJECTED) {
    void it(`rejects ${JSON.stringify(input)} (${why})`, () => {
      const parsed = PciAddress.safeParse(input);
      assert.equal(parsed.success, false, `expected ${JSON.stringify(input)} to be rejected, got ${JSON.stringify(parsed.data)}`);
      assert.ok(parsed.error.issues.length > 0);
      assert.ok(parsed.error.issues.every((i) => i.message.length > 0), 'every issue explains itself');
    });
  }

  void it('rejects anything over 12 characters by its length, before looking at it', () => {
    for (const input of ['0000:09:00.00', `0000:09:00.0${';rm -rf /'.repeat(1000)}`]) {
      const parsed = PciAddress.safeParse(input);
      assert.equal(parsed.success, false);
      assert.ok(parsed.error.issues.some((i) => i.message.includes('12 characters')), JSON.stringify(parsed.error.issues));
    }
  });

  void it('rejects values that are not strings', () => {
    for (const value of [null, undefined, 9, { bdf: '0000:09:00.0' }, ['0000:09:00.0']]) {
      assert.equal(PciAddress.safeParse(value).success, false, `accepted ${JSON.stringify(value)}`);
    }
  });

  void it('compareBdf orders addresses by domain, bus, device, function', () => {
    const shuffled = ['0000:0b:00.0', '0001:00:00.0', '0000:0a:04.1', '0000:01:00.0', '0000:0a:04.0', '0000:09:00.0'];
    assert.deepEqual([...shuffled].sort(compareBdf), ['0000:01:00.0', '0000:09:00.0', '0000:0a:04.0', '0000:0a:04.1', '0000:0b:00.0', '0001:00:00.0']);
    assert.equal(compareBdf('0000:09:00.0', '0000:09:00.0'), 0);
    assert.ok(compareBdf('0000:09:00.0', '0000:09:00.1') < 0);
    assert.ok(compareBdf('0000:0a:00.0', '0000:09:1f.7') > 0);
  });
});

void describe('asBdf (sysfs text → address)', () => {
  // asBdf turns most path components away by a regular expression before the schema: it must answer
  // exactly what the schema answers for the trimmed text, never accept more.
  const bySchema = (text: string): string | null => {
    const parsed = PciAddress.safeParse(text.trim());
    return parsed.success ? parsed.data : null;
  };

  void it('agrees with the schema on every table entry, trimmed or not', () => {
    for (const input of [...ACCEPTED.map(([i]) => i), ...REJECTED.map(([, i]) => i), '0000:09:00.0\n', ' 0000:0A:04.1 ', 'devices', 'pci0000:00', 'net:eth0']) {
      assert.equal(asBdf(input), bySchema(input), JSON.stringify(input));
    }
  });

  void it('agrees with the schema on random strings over the address alphabet', () => {
    const char = fc.constantFrom(...'0123456789abcdefABCDEFgG:. \n/-'.split(''));
    fc.assert(
      fc.property(fc.array(char, { maxLength: 16 }).map((cs) => cs.join('')), (text) => asBdf(text) === bySchema(text)),
      { numRuns: 20_000 },
    );
    // Shaped like an address, with every digit position drawn: the cases the quick test lets through.
    const hex = fc.constantFrom(...'0123456789abcdefABCDEFg'.split(''));
    const shaped = fc.tuple(fc.array(hex, { minLength: 4, maxLength: 4 }), fc.array(hex, { minLength: 2, maxLength: 2 }), fc.array(hex, { minLength: 2, maxLength: 2 }), fc.constantFrom(...'0123456789'.split('')))
      .map(([d, b, s, f]) => `${d.join('')}:${b.join('')}:${s.join('')}.${f}`);
    fc.assert(fc.property(shaped, (text) => asBdf(text) === bySchema(text)), { numRuns: 20_000 });
  });
});

void describe('HostId', () => {
  const accepted = ['h1', 'rhel5-xen-01', '0rack', 'a', 'x'.repeat(63)];
  const rejected: readonly (readonly [string, string])[] = [
    ['dot (NATS token separator)', 'h1.example.com'],
    ['star wildcard', 'h*'],
    ['full wildcard', '>'],
    ['trailing wildcard', 'h1>'],
    ['space', 'host 1'],
    ['tab', 'host\t1'],
    ['slash', 'hosts/h1'],
    ['path traversal', '..'],
    ['empty', ''],
    ['leading dash', '-h1'],
    ['upper case', 'H1'],
    ['64 characters', 'x'.repeat(64)],
    ['newline', 'h1\n'],
  ];
  for (const id of accepted) {
    void it(`accepts ${JSON.stringify(id.length > 20 ? `${id.slice(0, 8)}…(${id.length})` : id)}`, () => {
      assert.equal(HostId.parse(id), id);
    });
  }
  for (const [why, id] of rejected) {
    void it(`rejects ${JSON.stringify(id.length > 20 ? `${id.slice(0, 8)}…(${id.length})` : id)} (${why})`, () => {
      assert.equal(HostId.safeParse(id).success, false);
    });
  }
});

void describe('GuestName', () => {
  const accepted = ['vm-hvm', 'vm-pv6', 'VM_1', 'web01.prod', 'a', 'a.b-c_d', 'x'.repeat(64)];
  const rejected: readonly (readonly [string, string])[] = [
    ['just ..', '..'],
    ['.. inside', 'vm..x'],
    ['.. at the end', 'vm..'],
    ['path traversal', '../etc/passwd'],
    ['slash', 'xen/vm'],
    ['leading dot', '.vm'],
    ['space', 'vm hvm'],
    ['wildcard', 'vm*'],
    ['quote', "vm'"],
    ['semicolon', 'vm;reboot'],
    ['empty', ''],
    ['65 characters', 'x'.repeat(65)],
    ['newline', 'vm\n'],
  ];
  for (const name of accepted) {
    void it(`accepts ${JSON.stringify(name.length > 20 ? `${name.slice(0, 8)}…(${name.length})` : name)}`, () => {
      assert.equal(GuestName.parse(name), name);
    });
  }
  for (const [why, name] of rejected) {
    void it(`rejects ${JSON.stringify(name.length > 20 ? `${name.slice(0, 8)}…(${name.length})` : name)} (${why})`, () => {
      const parsed = GuestName.safeParse(name);
      assert.equal(parsed.success, false);
    });
  }
  void it('says why ".." is refused', () => {
    const parsed = GuestName.safeParse('vm..x');
    assert.equal(parsed.success, false);
    assert.ok(parsed.error.issues.some((i) => i.message.includes('..')), JSON.stringify(parsed.error.issues));
  });
});
