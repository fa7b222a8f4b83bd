import type { SpoeTlsOptions } from 'nestjs-spoe';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** The PEM files of SPOE_TLS_CERT, SPOE_TLS_KEY and SPOE_TLS_CA, as paths. */
export interface TlsFiles {
  /** The agent's certificate (and its chain). */
  readonly cert: string;
  /** Its private key. */
  readonly key: string;
  /** The CA(s) of HAProxy's client certificates: one is then required (mutual TLS). */
  readonly ca: string | undefined;
}

/** Files that cannot be the agent's TLS: every problem, one per entry, naming the variable. */
export class TlsFilesError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'TlsFilesError';
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Reads the files into the transport's TLS options — mutual TLS (`requestCert`) when there is a CA — checking that
 * each holds what it should: a certificate, a private key, CA certificates. Whether the key is the certificate's is the
 * transport's check (normalizeSpoeOptions, SpoeServer.reloadTls). Throws {@link TlsFilesError} listing every problem.
 *
 * The files are read again on each call: at startup, and on SIGHUP (TlsReloader).
 */
export function readTlsFiles(files: TlsFiles): SpoeTlsOptions {
  const problems: string[] = [];
  const read = (variable: string, path: string, check: (pem: Buffer) => string | undefined): Buffer | undefined => {
    let pem: Buffer;
    try {
      pem = readFileSync(path);
    } catch (error) {
      // Node's message ends with the path ("…, open '/x'"): said once, first.
      problems.push(`${variable}: cannot read "${path}": ${(error as Error).message.replace(/, \w+ '.*'$/, '')}`);
      return undefined;
    }
    const problem = check(pem);
    if (problem !== undefined) problems.push(`${variable}: "${path}" ${problem}`);
    return problem === undefined ? pem : undefined;
  };
  const cert = read('SPOE_TLS_CERT', files.cert, (pem) => certificatesProblem(pem));
  const key = read('SPOE_TLS_KEY', files.key, (pem) => {
    try {
      createPrivateKey(pem);
      return undefined;
    } catch (error) {
      return `holds no usable private key (${(error as Error).message})`;
    }
  });
  // createSecureContext takes a CA file without any certificate in it, and would then refuse every client.
  const ca = files.ca === undefined ? undefined : read('SPOE_TLS_CA', files.ca, (pem) => certificatesProblem(pem));
  if (problems.length > 0) throw new TlsFilesError(problems);
  return { cert: cert!, key: key!, ...(ca && { ca, requestCert: true }) };
}

/** The problem of files that the transport refused together (`reason`: its SpoeOptionsError's message). */
export function tlsFilesMismatch(files: TlsFiles, reason: string): string {
  const ca = files.ca === undefined ? '' : ` (SPOE_TLS_CA "${files.ca}")`;
  return `SPOE_TLS_CERT "${files.cert}" and SPOE_TLS_KEY "${files.key}"${ca} do not work together: ${reason}`;
}

/** Why a PEM file is not a list of certificates, or undefined when it is one. */
function certificatesProblem(pem: Buffer): string | undefined {
  const blocks = pem.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) return 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)';
  for (const [index, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (error) {
      return `holds a certificate that does not parse (number ${index + 1}: ${(error as Error).message})`;
    }
  }
  return undefined;
}
