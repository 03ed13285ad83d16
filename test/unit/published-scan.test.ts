import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { HostScan } from '../../agent/backend.js';
import { commandHandlers } from '../../agent/command-handlers.js';
import { fixtureHandlerContext } from '../helpers/handler-context.js';
import { simHostHarness } from '../helpers/sim-hosts.js';

// After a command that changes the host, the agent publishes the inventory from the scan the command
// said the kernel is as (kernelAsScanned) instead of scanning again. That scan must be the host as it
// is once the command is done: a scan from before the command's effect would publish a driver, a
// hidden flag or a guest's devices that are no longer so.

const sim = simHostHarness('ptctl-published-scan');

void describe('the scan an inventory is published from after a command', () => {
  void it('is the host as it is after the command, for every command that changes it', async () => {
    const { host, dir } = await sim.open({ hostId: 'h1' });
    let said: HostScan | null = null;
    const ctx = await fixtureHandlerContext(host, join(dir, 'state'), { kernelAsScanned: (scan) => (said = scan) });
    const bdf = '0000:09:00.0';
    const steps: Array<[string, () => Promise<unknown>]> = [
      ['hide', () => commandHandlers.hide(ctx, { bdf })],
      ['bind', () => commandHandlers.bind(ctx, { bdf, strategy: 'dynamic' })],
      ['attach', () => commandHandlers.attach(ctx, { bdf, guest: 'vm-hvm', mode: 'both', allowInsecurePV: false })],
      ['detach', () => commandHandlers.detach(ctx, { bdf, guest: 'vm-hvm', mode: 'both' })],
      ['unbind', () => commandHandlers.unbind(ctx, { bdf, driver: null })],
      ['unhide', () => commandHandlers.unhide(ctx, { bdf })],
    ];
    const drivers: Array<string | null | undefined> = [];
    for (const [name, run] of steps) {
      said = null;
      await run();
      assert.ok(said, `${name} names the scan to publish from`);
      assert.deepEqual(said, await host.scan(), `${name}: the scan it names is the host after it`);
      drivers.push((said as HostScan).devices.find((d) => d.bdf === bdf)?.driver);
    }
    // The walk really moved the device: a scan from before each effect could not have matched above.
    assert.deepEqual(drivers, ['bnx2', 'pciback', 'pciback', 'pciback', 'bnx2', 'bnx2']);
  });
});
