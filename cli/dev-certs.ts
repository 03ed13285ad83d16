import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ErrorCode, PtcError } from '../schemas/errors.js';

const run = promisify(execFile);

export interface DevCerts {
  caFile: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd });
  } catch (err) {
    throw new PtcError(ErrorCode.STACK_FAILED, `openssl ${args[0]} failed: ${(err as Error).message.split('\n')[0]}; is openssl installed?`, { cause: err });
  }
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A leaf certificate signed by the CA in `dir`, for a server (127.0.0.1/localhost) or a client. */
async function leaf(dir: string, name: string, usage: 'serverAuth' | 'clientAuth'): Promise<{ cert: string; key: string }> {
  const ext = join(dir, `${name}.ext`);
  await writeFile(ext, [usage === 'serverAuth' ? 'subjectAltName=IP:127.0.0.1,DNS:localhost' : `subjectAltName=DNS:${name}`, `extendedKeyUsage=${usage}`, 'keyUsage=critical,digitalSignature', ''].join('\n'));
  await openssl(['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '30', '-extfile', ext], dir);
  await chmod(join(dir, `${name}.key`), 0o600);
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
}

/**
 * A throw-away CA with a server certificate for 127.0.0.1 and one client certificate, for `ptctl dev
 * --tls` and the tests (openssl through argument arrays). Production certificates come from your PKI.
 */
export async function generateDevCerts(dirIn: string, clientName = 'ptc-client'): Promise<DevCerts> {
  const dir = resolve(dirIn);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await openssl(['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', '/CN=ptc-dev-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  await chmod(join(dir, 'ca.key'), 0o600);
  const server = await leaf(dir, 'server', 'serverAuth');
  const client = await leaf(dir, clientName, 'clientAuth');
  return { caFile: join(dir, 'ca.pem'), serverCert: server.cert, serverKey: server.key, clientCert: client.cert, clientKey: client.key };
}
