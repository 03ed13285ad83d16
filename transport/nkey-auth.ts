import { type KeyObject, createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { Codec } from '@nats-io/nkeys/lib/codec.js';
import type { Authenticator } from '@nats-io/transport-node';

/**
 * NATS nkey authentication with Node's own Ed25519. The client library's authenticators sign with
 * tweetnacl, in JavaScript, and derive the key pair from the seed anew for the public key and again for
 * the signature: about 45 ms of CPU per connection in a fresh process (`ptctl hosts` went from +257 to
 * +226 ms over `node -e 0` without it) and 13 ms in a warm one (0.67 s of the agents process's start at
 * 50 hosts, one connection per host, in its CPU profile). The key pair is derived here once, by the
 * crypto library, and each signature takes microseconds. Ed25519 signatures
 * are deterministic, so the answer to the server's nonce is byte for byte the library's (the test
 * compares them).
 */

/** A PKCS#8 DER encoding of an Ed25519 private key is this header followed by the 32-byte seed. */
const ED25519_PKCS8_HEADER = Buffer.from('302e020100300506032b657004220420', 'hex');

const CREDS_BLOCKS = /\s*(?:(?:-{3,}[^\n]*-{3,}\n)(.+)(?:\n\s*-{3,}[^\n]*-{3,}\n))/gi;

/** An nkey seed's identity: its public key as the server knows it, and a signer for its nonces. */
export interface NkeyIdentity {
  publicKey: string;
  sign(data: Uint8Array): Buffer;
}

export function nkeyIdentity(seed: string): NkeyIdentity {
  const { prefix, buf } = Codec.decodeSeed(new TextEncoder().encode(seed.trim()));
  const key: KeyObject = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_HEADER, buf]), format: 'der', type: 'pkcs8' });
  const rawPublic = createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(-32);
  return { publicKey: new TextDecoder().decode(Codec.encode(prefix, rawPublic)), sign: (data) => sign(null, data, key) };
}

/**
 * The authenticator for a credentials file's text: a `.creds` file (the user JWT, then its seed) or a
 * bare seed. Parsed once; a malformed file throws here, before any connection is tried.
 */
export function seedAuthenticator(text: string): Authenticator {
  const blocks = text.includes('-----BEGIN') ? [...text.matchAll(CREDS_BLOCKS)].map((m) => (m[1] ?? '').trim()) : null;
  if (blocks && blocks.length < 2) throw new Error('unable to parse credentials');
  const jwt = blocks?.[0];
  const identity = nkeyIdentity(blocks?.[1] ?? text);
  return (nonce) => {
    const sig = nonce ? identity.sign(new TextEncoder().encode(nonce)).toString('base64') : '';
    return jwt ? { jwt, nkey: identity.publicKey, sig } : { nkey: identity.publicKey, sig };
  };
}
