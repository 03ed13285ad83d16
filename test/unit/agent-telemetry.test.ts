import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AgentTelemetry } from '../../observability/agent-telemetry.js';
import { parseListenAddress } from '../../observability/metrics-server.js';
import { rhel5XenInventory } from '../helpers/inventory-fixture.js';
import { parseExposition, valueOf } from '../helpers/prometheus.js';

const encode = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

void describe('agent telemetry', () => {
  void it('counts commands by verb and result with bounded labels, and the handling time', async () => {
    const t = new AgentTelemetry();
    const meta = (command: string) => ({ hostId: 'h1', subject: `ptc.v1.agent.h1.${command}`, headers: undefined, data: encode({ opId: 'op/h1/0000:09:00.0/x#hide' }) });
    await t.handling(meta('hide'), async () => t.answered('h1', 'ptc.v1.agent.h1.hide', { ok: true, bootId: 'b', result: {} }));
    await t.handling(meta('hide'), async () => t.answered('h1', 'ptc.v1.agent.h1.hide', { ok: false, bootId: 'b', error: { code: 'DEVICE_IN_USE', message: 'in use' } }));
    await t.handling(meta('rm -rf'), async () => t.answered('h1', 'ptc.v1.agent.h1.rm -rf', { ok: false, bootId: 'b', error: { code: 'UNKNOWN_COMMAND', message: 'unknown' } }));
    const s = parseExposition(await t.registry.metrics());
    assert.equal(valueOf(s, 'ptc_agent_commands_total', { host: 'h1', command: 'hide', result: 'ok' }), 1);
    assert.equal(valueOf(s, 'ptc_agent_commands_total', { host: 'h1', command: 'hide', result: 'DEVICE_IN_USE' }), 1);
    assert.equal(valueOf(s, 'ptc_agent_commands_total', { host: 'h1', command: 'unknown', result: 'UNKNOWN_COMMAND' }), 1, 'a junk verb is not a label value');
    assert.equal(valueOf(s, 'ptc_agent_command_duration_seconds_count', { host: 'h1', command: 'hide' }), 2);
    for (const sample of s) for (const v of Object.values(sample.labels)) assert.ok(!v.includes('op/'), `${sample.name}: no op id in labels`);
  });

  void it('shows hotplugs per device against the cap, devices by driver (a vanished driver reads 0) and the journal', async () => {
    const t = new AgentTelemetry();
    const inv = rhel5XenInventory('h1');
    const hostId = inv.hostId;
    t.started({ hostId, hotplugCap: { max: 256, windowMs: 600_000 }, hotplugsInWindow: (bdf) => (bdf === '0000:09:00.0' ? 7 : 0), journalEntries: () => 12 });
    t.inventoryPublished(inv);
    // The e1000e devices leave (e.g. bound elsewhere); 0000:09:00.0 (bnx2) stays.
    const gone = 'e1000e';
    assert.ok(inv.devices.some((d) => d.driver === gone));
    t.inventoryPublished({ ...inv, devices: inv.devices.filter((d) => (d.driver ?? 'none') !== gone) });
    const s = parseExposition(await t.registry.metrics());
    assert.equal(valueOf(s, 'ptc_agent_hotplugs_in_window', { host: hostId, device: '0000:09:00.0' }), 7);
    assert.equal(valueOf(s, 'ptc_agent_hotplug_cap', { host: hostId }), 256);
    assert.equal(valueOf(s, 'ptc_agent_journal_entries', { host: hostId }), 12);
    assert.ok(s.some((x) => x.name === 'ptc_agent_devices' && x.labels.driver === gone && x.value === 0), `${gone} reads 0 after its devices left`);
    assert.equal(valueOf(s, 'ptc_agent_last_scan_timestamp_seconds', { host: hostId }), Date.parse(inv.seenAt) / 1000);
  });

  void it('parses --metrics addresses, loopback by default', () => {
    assert.deepEqual(parseListenAddress('9464'), { host: '127.0.0.1', port: 9464 });
    assert.deepEqual(parseListenAddress(':9464'), { host: '127.0.0.1', port: 9464 });
    assert.deepEqual(parseListenAddress('0.0.0.0:9464'), { host: '0.0.0.0', port: 9464 });
    assert.deepEqual(parseListenAddress('[::1]:9464'), { host: '::1', port: 9464 });
    for (const bad of ['', 'x', '127.0.0.1:99999', 'http://a:1', '1.2.3.4:']) assert.throws(() => parseListenAddress(bad), /INVALID_INPUT|is not an address/);
  });
});
