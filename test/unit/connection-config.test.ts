import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, isPtcError } from '../../schemas/errors.js';
import { resolveConnection } from '../../cli/connection.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ptctl-config-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const CONFIG = `
nats:
  url: tls://nats-1:4222,tls://nats-2:4222
  creds: /etc/ptctl/operator-alice.creds
  tls: { caFile: /etc/ptctl/ca.pem, certFile: /etc/ptctl/alice.pem, keyFile: /etc/ptctl/alice.key }
temporal:
  address: ns.acct.tmprl.cloud:7233
  namespace: ns.acct
  tls: { serverName: ns.acct.tmprl.cloud }
`;

void describe('connection settings: flags, then env, then the config file', () => {
  void it('takes every setting from the config file, with no dev stack running', () =>
    withDir(async (dir) => {
      await writeFile(join(dir, 'ptctl.yaml'), CONFIG);
      const conn = await resolveConnection({ dir: join(dir, 'none'), config: join(dir, 'ptctl.yaml') }, {});
      assert.equal(conn.natsUrl, 'tls://nats-1:4222,tls://nats-2:4222');
      assert.equal(conn.natsCreds, '/etc/ptctl/operator-alice.creds');
      assert.deepEqual(conn.natsTls, { caFile: '/etc/ptctl/ca.pem', certFile: '/etc/ptctl/alice.pem', keyFile: '/etc/ptctl/alice.key' });
      assert.equal(conn.temporalAddress, 'ns.acct.tmprl.cloud:7233');
      assert.equal(conn.temporalNamespace, 'ns.acct');
      assert.deepEqual(conn.temporalTls, { serverName: 'ns.acct.tmprl.cloud' });
    }));

  void it('lets env override the file and flags override env; PTC_CONFIG names the file', () =>
    withDir(async (dir) => {
      await writeFile(join(dir, 'ptctl.yaml'), CONFIG);
      const env = { PTC_CONFIG: join(dir, 'ptctl.yaml'), PTC_NATS_CREDS: '/env/viewer-noc.creds', PTC_TEMPORAL_NAMESPACE: 'from-env' };
      const conn = await resolveConnection({ dir: join(dir, 'none'), namespace: 'from-flag' }, env);
      assert.equal(conn.natsCreds, '/env/viewer-noc.creds');
      assert.equal(conn.temporalNamespace, 'from-flag');
      assert.equal(conn.natsUrl, 'tls://nats-1:4222,tls://nats-2:4222');
    }));

  void it('reads a Temporal Cloud API key from its file and turns TLS on with the system roots', () =>
    withDir(async (dir) => {
      await writeFile(join(dir, 'key'), 'secret-key\n', { mode: 0o600 });
      await writeFile(join(dir, 'c.json'), JSON.stringify({ nats: { url: 'nats://x:4222', creds: '/c' }, temporal: { address: 'a:7233', apiKeyFile: join(dir, 'key') } }));
      const conn = await resolveConnection({ dir: join(dir, 'none'), config: join(dir, 'c.json') }, {});
      assert.equal(conn.temporalApiKey, 'secret-key');
      assert.deepEqual(conn.temporalTls, {});
    }));

  void it('refuses an unknown or misspelt key, naming it', () =>
    withDir(async (dir) => {
      await writeFile(join(dir, 'bad.yaml'), 'nats:\n  url: nats://x:4222\n  cred: /typo\n');
      await assert.rejects(resolveConnection({ dir: join(dir, 'none'), config: join(dir, 'bad.yaml') }, {}), (e) => isPtcError(e, ErrorCode.INVALID_INPUT) && /cred/.test((e as Error).message));
    }));
});
