/**
 * The raw NATS request/reply baseline of the agent bench: a process that answers every request on
 * one subject with the request's own bytes, as an agent would answer, minus all agent work. It
 * connects as a host identity, like an agent does (same permissions, same inbox, same TLS), so the
 * only difference the bench measures is the agent's own work.
 * Usage: node echo-responder.js <natsUrl> <credsFile> <subject> [<tls JSON>]; prints "ready" once subscribed.
 */
import { connectNats, type NatsTls } from '../transport/nats-connection.js';

const [natsUrl, seedFile, subject, tlsJson] = process.argv.slice(2);
if (!natsUrl || !seedFile || !subject) throw new Error('usage: echo-responder <natsUrl> <credsFile> <subject> [<tls JSON>]');
const tls = tlsJson ? (JSON.parse(tlsJson) as NatsTls) : undefined;
const nc = await connectNats({ servers: natsUrl, seedFile, name: 'ptc-bench-echo', reconnectForever: true, tls });
nc.subscribe(subject, { callback: (_err, msg) => {
    msg.respond(msg.data);
  } });
await nc.flush();
process.stdout.write('ready\n');
process.on('SIGTERM', () => void nc.close().then(() => process.exit(0)));
