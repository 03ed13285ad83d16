// Agent-only entry for the single-file bundle that runs inside the real Xen dom0 (issue #7):
// `ptctl agent --backend linux` without the rest of the CLI (no Temporal, no native modules), so
// dom0 needs no node_modules. scripts/xen/bundle-agent.mjs bundles this file with esbuild.
//
//   node ptctl-agent.mjs [--backend linux] --host-id H --nats-url URL --nats-creds FILE [--root /]
//                        [--state-dir DIR] [--toolstack auto|xl|xm] [--heartbeat MS]
import { parseArgs } from 'node:util';
import { runLinuxAgent } from '../../dist/cli/linux-agent.js';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'linux' },
    'host-id': { type: 'string' },
    'nats-url': { type: 'string' },
    'nats-creds': { type: 'string' },
    root: { type: 'string', default: '/' },
    'state-dir': { type: 'string', default: '/var/lib/ptctl' },
    toolstack: { type: 'string', default: 'auto' },
    heartbeat: { type: 'string', default: '10000' },
  },
  strict: true,
});
const need = (k) => {
  const v = values[k];
  if (!v) {
    process.stderr.write(`ptctl-agent: --${k} is required\n`);
    process.exit(2);
  }
  return v;
};
if (values.backend !== 'linux') {
  process.stderr.write('ptctl-agent: this bundle runs the linux backend only\n');
  process.exit(2);
}
const toolstack = values.toolstack;
if (!['auto', 'xl', 'xm'].includes(toolstack)) {
  process.stderr.write('ptctl-agent: --toolstack must be auto, xl or xm\n');
  process.exit(2);
}
const heartbeatMs = Number(values.heartbeat);
if (!Number.isInteger(heartbeatMs) || heartbeatMs < 200) {
  process.stderr.write('ptctl-agent: --heartbeat must be an integer >= 200 (ms)\n');
  process.exit(2);
}
try {
  await runLinuxAgent({
    hostId: need('host-id'),
    natsUrl: need('nats-url'),
    natsCreds: need('nats-creds'),
    root: values.root,
    stateDir: values['state-dir'],
    toolstack,
    heartbeatMs,
  });
  process.exit(0);
} catch (err) {
  process.stderr.write(`ptctl-agent: ${err?.code ? `${err.code}: ` : ''}${err?.message ?? err}\n`);
  process.exit(1);
}
