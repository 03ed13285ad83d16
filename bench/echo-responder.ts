/**
 * The raw NATS request/reply baseline of the agent bench: a process that answers every request on
 * one subject with the request's own bytes, as an agent would answer, minus all agent work.
 * Usage: node echo-responder.js <natsUrl> <seedFile> <subject>; prints "ready" once subscribed.
 */
import { connectNats } from '../transport/nats-connection.js';

const [natsUrl, seedFile, subject] = process.argv.slice(2);
if (!natsUrl || !seedFile || !subject) throw new Error('usage: echo-responder <natsUrl> <seedFile> <subject>');
const nc = await connectNats({ servers: natsUrl, seedFile, name: 'ptc-bench-echo' });
nc.subscribe(subject, { callback: (_err, msg) => {
    msg.respond(msg.data);
  } });
await nc.flush();
process.stdout.write('ready\n');
process.on('SIGTERM', () => void nc.close().then(() => process.exit(0)));
