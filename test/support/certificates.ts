/**
 * Certificates for the TLS tests, made with the openssl CLI as the README tells users to (scripts/test.sh installs
 * it): a CA, the agent's certificate (localhost, 127.0.0.1, ::1), HAProxy's client certificate signed by the CA, and
 * a second CA with a client certificate of its own (one the agent must refuse). ECDSA P-256: quick to make and
 * accepted by HAProxy 2.6 to 3.4. Valid for two days.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { commandPrerequisite, Prerequisite } from './prerequisites';

/** The openssl CLI, which makes the certificates. */
export const OPENSSL: Prerequisite = commandPrerequisite('openssl', ['openssl', 'version'], 'apt-get install openssl');

/** A certificate and its key: file paths (PEM) and their contents. */
export interface TestIdentity {
  readonly certFile: string;
  readonly keyFile: string;
  /** Certificate then key in one file: what HAProxy's `crt` takes. */
  readonly pemFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** A CA and what it signed. */
export interface TestPki {
  /** Where the files are. */
  readonly dir: string;
  readonly caFile: string;
  readonly ca: Buffer;
  /** The agent's certificate: CN localhost, SANs localhost, 127.0.0.1, ::1. */
  readonly server: TestIdentity;
  /** HAProxy's client certificate: CN haproxy-test, signed by the CA. */
  readonly client: TestIdentity;
  /** Another CA, and a client certificate it signed (CN intruder): valid, but not the agent's CA's. */
  readonly otherCaFile: string;
  readonly otherClient: TestIdentity;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** `openssl req` making a new P-256 key `<name>.key` (unencrypted) and, for `/CN=<cn>`, what `output` says. */
function newKey(dir: string, name: string, cn: string, ...output: string[]): void {
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`];
  openssl(dir, 'req', ...key, ...output, '-subj', `/CN=${cn}`);
}

/** A self-signed CA: `<name>.pem` and `<name>.key`. */
function newCa(dir: string, name: string): void {
  newKey(dir, name, name, '-x509', '-out', `${name}.pem`, '-days', '2');
}

/** A key and a certificate for `cn`, signed by the CA `ca` (files `<ca>.pem`, `<ca>.key` in `dir`). */
function issue(dir: string, ca: string, name: string, cn: string, extensions: string): TestIdentity {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `${extensions}\n`);
  newKey(dir, name, cn, '-out', `${name}.csr`);
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-extfile',
    ext,
  );
  const cert = readFileSync(join(dir, `${name}.pem`));
  const key = readFileSync(join(dir, `${name}.key`));
  const pemFile = join(dir, `${name}-with-key.pem`);
  writeFileSync(pemFile, Buffer.concat([cert, key]));
  return { certFile: join(dir, `${name}.pem`), keyFile: join(dir, `${name}.key`), pemFile, cert, key };
}

/** The agent's certificate's extensions: its names, and clientAuth so that it can probe itself under mutual TLS. */
const SERVER_EXTENSIONS = 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth,clientAuth';

/** Another certificate for the agent, signed by the same CA (a renewal, for reload tests); `name` names its files. */
export function renewServerCertificate(pki: TestPki, name: string): TestIdentity {
  return issue(pki.dir, 'ca', name, 'localhost', SERVER_EXTENSIONS);
}

/** Makes a CA, the agent's and HAProxy's certificates, and another CA's client certificate, in `dir`. */
export function makeTestPki(dir: string): TestPki {
  newCa(dir, 'ca');
  newCa(dir, 'other-ca');
  const server = issue(dir, 'ca', 'server', 'localhost', SERVER_EXTENSIONS);
  const client = issue(dir, 'ca', 'client', 'haproxy-test', 'extendedKeyUsage=clientAuth');
  const otherClient = issue(dir, 'other-ca', 'other-client', 'intruder', 'extendedKeyUsage=clientAuth');
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    ca: readFileSync(join(dir, 'ca.pem')),
    server,
    client,
    otherCaFile: join(dir, 'other-ca.pem'),
    otherClient,
  };
}
