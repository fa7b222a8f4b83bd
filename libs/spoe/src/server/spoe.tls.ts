import { X509Certificate } from 'node:crypto';
import { createSecureContext, SecureContextOptions, TlsOptions } from 'node:tls';

/**
 * TLS of the SPOE port, as node:tls takes it: HAProxy 2.6+ reaches an agent over TLS with
 * `server a1 HOST:PORT ssl verify required ca-file ca.pem [crt client.pem]`.
 *
 * Mutual TLS: `ca` (the CA that signs HAProxy's client certificates) with `requestCert: true`: a peer without a
 * certificate signed by it fails the TLS handshake and never gets an AGENT-HELLO (`rejectUnauthorized` stays true, as
 * in node:tls). The verified certificate is then in each handler's context (`SpoeContext.getPeerCertificate()`).
 */
export type SpoeTlsOptions = Pick<
  SecureContextOptions,
  'key' | 'cert' | 'ca' | 'pfx' | 'passphrase' | 'crl' | 'ciphers' | 'ecdhCurve' | 'minVersion' | 'maxVersion'
> &
  Pick<TlsOptions, 'requestCert' | 'rejectUnauthorized'>;

/** What a new SPOE connection's TLS handshake could not get past: a reason as a bounded label. */
export type SpoeTlsFailure = 'timeout' | 'certificate' | 'closed' | 'protocol';

/**
 * Checks TLS options by building the secure context they describe (a key that does not match its certificate, a PEM
 * that does not parse), and returns them: the error names what is wrong. `what` prefixes it (`tls`, `reloadTls`).
 */
export function checkTlsOptions(options: SpoeTlsOptions, what: string): Readonly<SpoeTlsOptions> {
  if (typeof options !== 'object' || options === null) throw new TypeError(`${what} must be an object of TLS options`);
  if (options.pfx === undefined && (options.cert === undefined || options.key === undefined)) {
    throw new TypeError(`${what} needs cert and key (or pfx): the agent's certificate`);
  }
  if (options.requestCert && options.ca === undefined) {
    throw new TypeError(
      `${what}.requestCert needs ca: the CA that signs HAProxy's client certificates (otherwise any publicly trusted ` +
        'certificate would do)',
    );
  }
  // node:tls takes a CA file without any certificate in it, and then refuses every client.
  for (const ca of options.ca === undefined ? [] : [options.ca].flat()) {
    try {
      new X509Certificate(ca);
    } catch (error) {
      throw new TypeError(`${what}.ca holds no certificate: ${(error as Error).message}`, { cause: error });
    }
  }
  try {
    createSecureContext(options);
  } catch (error) {
    throw new TypeError(`${what}: ${(error as Error).message}`, { cause: error });
  }
  return Object.freeze({ ...options });
}

/**
 * The reason label of a failed TLS handshake (node:tls' `tlsClientError`). A client certificate that fails
 * verification under TLS 1.3 shows as the socket's `authorizationError`, the error itself being a hang-up.
 */
export function tlsFailureOf(
  error: NodeJS.ErrnoException,
  socket: { authorizationError?: Error | string },
): SpoeTlsFailure {
  const code = error.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'timeout';
  if (socket.authorizationError || /CERT|PEER_DID_NOT_RETURN|UNKNOWN_CA|VERIFY/i.test(`${code} ${error.message}`))
    return 'certificate';
  if (code === 'ECONNRESET' || code === 'EPIPE' || /socket disconnected|hang up/i.test(error.message)) return 'closed';
  return 'protocol';
}
