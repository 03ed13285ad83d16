import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { connectNats } from '../../transport/nats-connection.js';
import { type DevCerts, generateDevCerts } from '../../cli/dev-certs.js';
import { temporalConnectOptions } from '../../cli/temporal-connection.js';
import { type TestStack, runCli, startTestStack } from '../helpers/stack.js';
import { quietTemporalRuntime } from '../helpers/temporal-env.js';

void describe('ptctl dev --tls: mutual TLS on NATS and in front of Temporal', () => {
  let t: TestStack;
  let certs: DevCerts;
  let wrong: DevCerts;
  let wrongDir: string;
  before(async () => {
    quietTemporalRuntime();
    t = await startTestStack({ simHosts: ['sim-1'], tls: true, agentTimeoutMs: 3000 });
    const files = t.stack.tlsFiles;
    assert.ok(files);
    certs = files;
    wrongDir = await mkdtemp(join(tmpdir(), 'ptctl-wrong-ca-'));
    wrong = await generateDevCerts(wrongDir, 'intruder');
  });
  after(async () => {
    await t[Symbol.asyncDispose]();
    await rm(wrongDir, { recursive: true, force: true });
  });

  const natsUrl = (): string => t.stack.connection.natsUrl;
  const plainUrl = (): string => natsUrl().replace(/^tls:/, 'nats:');
  const natsAs = (tls: Parameters<typeof connectNats>[0]['tls'], url = natsUrl()) => connectNats({ servers: url, seedFile: t.stack.connection.natsCreds, name: 'tls-probe', tls });

  void it('runs worker, agents and CLI over TLS: an attach goes through end to end', async () => {
    assert.match(natsUrl(), /^tls:\/\//);
    const env = { PTC_NATS_URL: '', PTC_NATS_CREDS: '', PTC_TEMPORAL_ADDRESS: '' };
    const res = await runCli(['attach', '--dir', t.dir, '--host', 'sim-1', '--device', '0000:09:00.0', '--guest', 'vm-hvm', '--wait', '--json'], env);
    assert.equal(res.code, 0, res.stderr + res.stdout);
    const attached = JSON.parse(res.stdout) as { workflowId: string; result: { outcome: string } };
    assert.equal(attached.result.outcome, 'attached');
    // ptctl status reads through its own gRPC reader, not the SDK client: the same mTLS must carry it.
    const status = await runCli(['status', attached.workflowId, '--dir', t.dir, '--json'], env);
    assert.equal(status.code, 0, status.stderr + status.stdout);
    assert.deepEqual((({ status: s, outcome }) => ({ s, outcome }))(JSON.parse(status.stdout) as { status: string; outcome: string }), { s: 'COMPLETED', outcome: 'attached' });
  });

  void it('NATS refuses a plaintext client, a client without a certificate and one whose certificate another CA signed', async () => {
    const ok = await natsAs({ caFile: certs.caFile, certFile: certs.clientCert, keyFile: certs.clientKey });
    await ok.close();
    await assert.rejects(natsAs(undefined, plainUrl()), 'plaintext');
    await assert.rejects(natsAs({ caFile: certs.caFile }), 'no client certificate');
    await assert.rejects(natsAs({ caFile: certs.caFile, certFile: wrong.clientCert, keyFile: wrong.clientKey }), 'client certificate of another CA');
    await assert.rejects(natsAs({ caFile: wrong.caFile, certFile: certs.clientCert, keyFile: certs.clientKey }), 'the client does not trust the server');
  });

  void it('Temporal refuses a plaintext client, one without a certificate and one of another CA', async () => {
    const base = t.stack.connection;
    const good = await Connection.connect({ ...(await temporalConnectOptions(base)), connectTimeout: 5000 });
    await good.workflowService.describeNamespace({ namespace: base.temporalNamespace });
    await good.close();
    const refused = async (conn: typeof base, why: string): Promise<void> => {
      await assert.rejects(
        (async () => {
          const c = await Connection.connect({ ...(await temporalConnectOptions(conn)), connectTimeout: 3000 });
          try {
            await c.workflowService.describeNamespace({ namespace: base.temporalNamespace });
          } finally {
            await c.close();
          }
        })(),
        why,
      );
    };
    const { temporalTls: _tls, ...plain } = base;
    await refused(plain, 'plaintext');
    await refused({ ...base, temporalTls: { caFile: certs.caFile, serverName: 'localhost' } }, 'no client certificate');
    await refused({ ...base, temporalTls: { caFile: certs.caFile, certFile: wrong.clientCert, keyFile: wrong.clientKey, serverName: 'localhost' } }, 'client certificate of another CA');
  });
});
