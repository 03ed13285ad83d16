import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createAccount, createUser } from '@nats-io/nkeys';
import { credsAuthenticator, nkeyAuthenticator } from '@nats-io/transport-node';
import { nkeyIdentity, seedAuthenticator } from '../../transport/nkey-auth.js';

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
const creds = (jwt: string, seed: string): string =>
  `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n\n*************************************************************\n`;

void describe('nkey authentication with node:crypto', () => {
  void it('answers a nonce exactly as the NATS client library does, for user and account seeds', () => {
    for (const pair of [createUser(), createUser(), createAccount()]) {
      const seed = text(pair.getSeed());
      assert.equal(nkeyIdentity(seed).publicKey, pair.getPublicKey());
      for (const nonce of ['3yvPG5Q4hJfyV6A', 'x'.repeat(64), undefined]) {
        assert.deepEqual(seedAuthenticator(seed)(nonce), nkeyAuthenticator(pair.getSeed())(nonce), `nonce ${nonce ?? '(none)'}`);
      }
    }
  });

  void it('reads a .creds file as the library does: the JWT, then the seed that signs', () => {
    const pair = createUser();
    const file = creds('eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJuYW1lIjoiaG9zdC1zaW0tMSJ9.c2ln', text(pair.getSeed()));
    const nonce = 'a-nonce-from-the-server';
    assert.deepEqual(seedAuthenticator(file)(nonce), credsAuthenticator(new TextEncoder().encode(file))(nonce));
  });

  void it('refuses a credentials file without a seed before any connection', () => {
    assert.throws(() => seedAuthenticator('-----BEGIN NATS USER JWT-----\neyJ.x.y\n------END NATS USER JWT------\n'), /unable to parse credentials/);
    assert.throws(() => seedAuthenticator('not a seed'));
  });
});
