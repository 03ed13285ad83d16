import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../helpers/stack.js';

void describe('ptctl demo (the README\'s main job)', () => {
  void it('passes on a 4-host fleet with every situation: canary, reboot host, refused host, undone failure', async () => {
    const res = await runCli(['demo', '--hosts', '4'], { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' });
    assert.equal(res.code, 0, res.stdout.slice(-3000) + res.stderr);
    assert.match(res.stdout, /Plan demo: 3 hosts to change \(1 host reboot\), 0 already done, 1 refused, 0 unknown\./);
    assert.match(res.stdout, /rollout demo: 3\/3 hosts done, 2 ok, 1 failed/);
    assert.match(res.stdout, /✓ THROTTLED: /);
    assert.match(res.stdout, /✓ DEVICE_IN_USE: /);
    assert.doesNotMatch(res.stdout, /WRONG/);
    assert.match(res.stdout, /demo passed in/);
  });
});
