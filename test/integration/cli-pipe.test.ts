import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { PTCTL_ENTRY } from '../../cli/tools.js';
import { type TestStack, startTestStack } from '../helpers/stack.js';

const HOSTS = 500;

/**
 * `ptctl hosts --json | <reader>`: ptctl's stdout is a real OS pipe into another process, as with jq.
 * The reader parses everything it gets and prints how many hosts it saw and how many bytes it read.
 */
function pipeThroughReader(args: readonly string[]): Promise<{ code: number; hosts: number; bytes: number; stderr: string }> {
  const env = { ...process.env, PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
  const ptctl = spawn(process.execPath, [PTCTL_ENTRY, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  // The reader starts slowly on purpose (a busy jq): ptctl must wait for its output to drain, not exit.
  const readerScript = `setTimeout(() => { let s = ''; process.stdin.setEncoding('utf8'); process.stdin.on('data', (d) => (s += d)); process.stdin.on('end', () => { process.stdout.write(JSON.stringify({ hosts: JSON.parse(s).length, bytes: Buffer.byteLength(s) })); }); }, 300);`;
  const reader = spawn(process.execPath, ['-e', readerScript], { stdio: [ptctl.stdout, 'pipe', 'pipe'] });
  let stderr = '';
  let out = '';
  ptctl.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  reader.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  reader.stdout.on('data', (d: Buffer) => (out += d.toString()));
  // 'exit', not 'close': ptctl's stdout belongs to the reader, so this process never sees it close.
  const exited = (p: typeof ptctl, event: 'exit' | 'close'): Promise<number> => new Promise((resolve, reject) => {
    p.on('error', reject);
    p.on(event, (code: number | null) => resolve(code ?? -1));
  });
  return Promise.all([exited(ptctl, 'exit'), exited(reader, 'close')]).then(([code, readerCode]) => {
    ptctl.stdout.destroy();
    if (readerCode !== 0) return { code, hosts: -1, bytes: -1, stderr };
    const parsed = JSON.parse(out) as { hosts: number; bytes: number };
    return { code, ...parsed, stderr };
  });
}

void describe('ptctl output into a pipe', () => {
  let t: TestStack;
  before(async () => {
    // 500 simulated kernels building their trees take a minute on a loaded 2-core machine.
    t = await startTestStack({ simHosts: HOSTS, temporal: false, heartbeatMs: 60_000, agentsReadyMs: 180_000 });
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
  });

  void it(`hands all of \`hosts --json\` for ${HOSTS} hosts to the reader before it exits`, async () => {
    const res = await pipeThroughReader(['hosts', '--json', '--dir', t.dir]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.hosts, HOSTS, `the reader parsed every host (${res.stderr})`);
    // Far more than a pipe's 64 KiB buffer, or this would not test the drain at all.
    assert.ok(res.bytes > 4 * 65_536, `${res.bytes} bytes`);
  });
});
