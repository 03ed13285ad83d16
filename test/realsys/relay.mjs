#!/usr/bin/env node
// QEMU guestfwd helper (test/xen, test/kvm): QEMU's user network (slirp) runs this once per TCP connection that the guest
// (dom0, L1) opens to the forwarded guest address, with the connection on stdin/stdout; it relays the bytes to
// 127.0.0.1:<port> on the host. So the guest reaches exactly one loopback port and nothing else
// (the netdev runs with restrict=on).
//   usage (from QEMU): guestfwd=tcp:10.0.2.100:4222-cmd:node relay.mjs <port>
import net from 'node:net';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write('relay: usage: relay.mjs <port>\n');
  process.exit(2);
}
const sock = net.connect({ host: '127.0.0.1', port });
process.stdin.pipe(sock);
sock.pipe(process.stdout);
sock.on('error', (err) => {
  process.stderr.write(`relay: 127.0.0.1:${port}: ${err.message}\n`);
  process.exit(1);
});
sock.on('close', () => process.exit(0));
process.stdin.on('end', () => sock.end());
