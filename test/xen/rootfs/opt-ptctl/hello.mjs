// Placeholder for ptctl's agent inside dom0 (replace with PTC_XEN_AGENT_DIR): proves that Node.js
// runs there. The harness (test/xen/run.mjs) looks for the line "node ok".
import os from 'node:os';

console.log(`node ok ${process.version} ${os.type()} ${os.release()} ${os.arch()}`);
