import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData, status } from '@grpc/grpc-js';
import { generateDevCerts, type DevCerts } from '../../cli/dev-certs.js';
import type { Connection } from '../../cli/connection.js';
import { openWorkflowReader } from '../../cli/workflow-reader.js';

// What a Temporal frontend that checks callers sees of the CLI's reader: the API key as a bearer token
// and the namespace header (as the SDK client sends them), over TLS verified against the given CA.
// A grpc-js server stands in for it and answers every describe with NOT_FOUND.

void describe('the CLI\'s Temporal reader on the wire', () => {
  let dir: string;
  let certs: DevCerts;
  let server: Server;
  let port: number;
  const seen: Array<{ path: string; authorization: unknown; namespace: unknown }> = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ptctl-reader-'));
    certs = await generateDevCerts(dir);
    server = new Server();
    const describe = (call: ServerUnaryCall<Buffer, Buffer>, reply: sendUnaryData<Buffer>): void => {
      seen.push({ path: call.getPath(), authorization: call.metadata.get('authorization')[0], namespace: call.metadata.get('temporal-namespace')[0] });
      reply({ code: status.NOT_FOUND, details: 'workflow not found' });
    };
    const identity = (b: Buffer): Buffer => b;
    server.addService(
      { DescribeWorkflowExecution: { path: '/temporal.api.workflowservice.v1.WorkflowService/DescribeWorkflowExecution', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
      { DescribeWorkflowExecution: describe },
    );
    const creds = ServerCredentials.createSsl(await readFile(certs.caFile), [{ private_key: await readFile(certs.serverKey), cert_chain: await readFile(certs.serverCert) }], false);
    port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  });
  after(async () => {
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });

  const connection = (extra: Partial<Connection>): Connection => ({ natsUrl: 'nats://127.0.0.1:1', natsCreds: '/dev/null', temporalAddress: `127.0.0.1:${port}`, temporalNamespace: 'fleet-prod', temporalUi: null, ...extra });

  void it('sends the API key as a bearer token and the namespace header, over TLS checked against the CA', async () => {
    const reader = await openWorkflowReader(connection({ temporalTls: { caFile: certs.caFile }, temporalApiKey: 'key-123' }));
    try {
      assert.equal(await reader.describe('op/sim-1/0000:09:00.0/x'), null, 'NOT_FOUND is no workflow');
    } finally {
      reader.close();
    }
    assert.deepEqual(seen.at(-1), { path: '/temporal.api.workflowservice.v1.WorkflowService/DescribeWorkflowExecution', authorization: 'Bearer key-123', namespace: 'fleet-prod' });
  });

  void it('does not talk to a server whose certificate the given CA did not sign', async () => {
    const other = await generateDevCerts(join(dir, 'other'));
    const before = seen.length;
    const reader = await openWorkflowReader(connection({ temporalTls: { caFile: other.caFile } }));
    try {
      await assert.rejects(() => reader.describe('op/x'), /NOT_CONNECTED|cannot reach Temporal/);
    } finally {
      reader.close();
    }
    assert.equal(seen.length, before, 'no call reached the server');
  });
});
