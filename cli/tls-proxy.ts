import { connect as tcpConnect } from 'node:net';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:tls';

/**
 * A mutual-TLS front for a plaintext TCP server on loopback. `temporal server start-dev` has no TLS
 * options, so `ptctl dev --tls` puts this in front of it: clients then need the CA and a client
 * certificate signed by it, exactly as with a TLS-enabled Temporal cluster.
 */
export async function startTlsProxy(opts: { listenPort: number; backendPort: number; caFile: string; certFile: string; keyFile: string }): Promise<{ close: () => Promise<void> }> {
  const [ca, cert, key] = await Promise.all([readFile(opts.caFile), readFile(opts.certFile), readFile(opts.keyFile)]);
  const open = new Set<{ destroy: () => void }>();
  const server: Server = createServer({ ca, cert, key, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['h2'] }, (client) => {
    const backend = tcpConnect({ host: '127.0.0.1', port: opts.backendPort });
    open.add(client);
    open.add(backend);
    client.pipe(backend).pipe(client);
    const end = (): void => {
      client.destroy();
      backend.destroy();
      open.delete(client);
      open.delete(backend);
    };
    client.on('error', end);
    backend.on('error', end);
    client.on('close', end);
    backend.on('close', end);
  });
  // A refused handshake (no or wrong client certificate) is the point, not an error of the proxy.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listenPort, '127.0.0.1', () => resolve());
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Clients that are still connected would keep close() waiting forever.
        for (const s of open) s.destroy();
      }),
  };
}
