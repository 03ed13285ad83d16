import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PTCTL_ENTRY } from '../../cli/tools.js';
import { type TestStack, startTestStack } from '../helpers/stack.js';

const HOSTS = 500;

// Compiled to dist/test/integration/: the repository root is three levels up.
const NIC_PLAN = fileURLToPath(new URL('../../../examples/nic-to-hvm.yaml', import.meta.url));

/**
 * Reader scripts. `parse` starts slowly on purpose (a busy jq): ptctl must wait for its output to
 * drain, not exit. It parses everything it gets and prints how many hosts it saw (of a `hosts --json`
 * array or of a plan's `hosts`) and how many bytes it read. `first` takes one chunk and exits, as
 * `head -c` does: ptctl's next write meets a closed pipe.
 */
const READERS = {
  parse: `setTimeout(() => { let s = ''; process.stdin.setEncoding('utf8'); process.stdin.on('data', (d) => (s += d)); process.stdin.on('end', () => { const doc = JSON.parse(s); process.stdout.write(JSON.stringify({ hosts: (Array.isArray(doc) ? doc : doc.hosts).length, bytes: Buffer.byteLength(s) })); }); }, 300);`,
  first: `process.stdin.once('data', (d) => { process.stdout.write(JSON.stringify({ hosts: 0, bytes: d.length })); process.exit(0); });`,
} as const;

/** `ptctl … | <reader>`: ptctl's stdout is a real OS pipe into another process, as with jq. */
function pipeThroughReader(args: readonly string[], readerScript: string = READERS.parse): Promise<{ code: number; hosts: number; bytes: number; stderr: string }> {
  const env = { ...process.env, PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
  const ptctl = spawn(process.execPath, [PTCTL_ENTRY, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const reader = spawn(process.execPath, ['-e', readerScript], { stdio: [ptctl.stdout, 'pipe', 'pipe'] });
  // The reader has its own copy of the pipe's read end. Holding this one too would keep the pipe open
  // after the reader exits: ptctl would wait for room forever instead of meeting a closed pipe, as it
  // does under a shell.
  ptctl.stdout.destroy();
  // A ptctl that hangs on its output fails this test in a minute, instead of the whole file in five.
  const guard = setTimeout(() => {
    ptctl.kill();
    reader.kill();
  }, 60_000);
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
    clearTimeout(guard);
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

  void it(`hands all of \`plan --json\` over ${HOSTS} hosts to the reader as one JSON document`, async () => {
    const res = await pipeThroughReader(['plan', NIC_PLAN, '--json', '--dir', t.dir]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.hosts, HOSTS, `the reader parsed the plan of every host (${res.stderr})`);
    assert.ok(res.bytes > 4 * 65_536, `${res.bytes} bytes`);
    assert.equal(res.stderr, '', 'no progress lines for 500 hosts into a pipe, and nothing else');
  });

  void it('stops writing the plan, without an error, when the reader goes away after its first chunk', async () => {
    for (const args of [['plan', NIC_PLAN, '--json'], ['plan', NIC_PLAN]]) {
      const res = await pipeThroughReader([...args, '--dir', t.dir], READERS.first);
      assert.equal(res.code, 0, `${args.join(' ')}: the plan's own exit code (${res.stderr})`);
      assert.ok(res.bytes > 0, 'the reader got the start of the plan');
      assert.equal(res.stderr, '', `${args.join(' ')}: no stack trace`);
    }
  });
});
