import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostFiles } from '../../agent/host-files.js';

void describe('HostFiles.resolve', () => {
  void it('puts host paths under the root, and refuses one that climbs out of it', () => {
    const files = new HostFiles('/srv/hosts/h1/');
    assert.equal(files.resolve('/etc/modprobe.conf'), '/srv/hosts/h1/etc/modprobe.conf');
    assert.equal(files.resolve('/sys/bus/../bus/pci'), '/srv/hosts/h1/sys/bus/pci');
    assert.equal(files.resolve('/'), '/srv/hosts/h1/');
    assert.throws(() => files.resolve('/../h2/etc/modprobe.conf'), /escapes the host root/);
    // A sibling whose name starts with the root's is outside it too.
    assert.throws(() => files.resolve('/../h1x/etc'), /escapes the host root/);
  });

  void it('on a real host (root /) is the path itself', () => {
    const files = new HostFiles('/');
    assert.equal(files.resolve('/etc/modprobe.d/ptctl.conf'), '/etc/modprobe.d/ptctl.conf');
    assert.equal(files.resolve('/../etc/x'), '/etc/x');
  });
});

void describe('HostFiles.writeAtomic', () => {
  void it('writes the new text, keeps the previous one as .ptctl.bak, and leaves no temp file', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ptctl-host-files-'));
    try {
      const files = new HostFiles(root);
      await files.writeAtomic('/etc/modprobe.d/ptctl.conf', 'one\n');
      assert.equal(await files.read('/etc/modprobe.d/ptctl.conf'), 'one\n');
      assert.equal(await files.read('/etc/modprobe.d/ptctl.conf.ptctl.bak'), null, 'a first write has nothing to back up');
      await files.writeAtomic('/etc/modprobe.d/ptctl.conf', 'two\n');
      await files.writeAtomic('/etc/modprobe.d/ptctl.conf', 'three\n');
      assert.equal(await files.read('/etc/modprobe.d/ptctl.conf'), 'three\n');
      assert.equal(await files.read('/etc/modprobe.d/ptctl.conf.ptctl.bak'), 'two\n');
      assert.deepEqual(readdirSync(join(root, 'etc/modprobe.d')).sort(), ['ptctl.conf', 'ptctl.conf.ptctl.bak']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
