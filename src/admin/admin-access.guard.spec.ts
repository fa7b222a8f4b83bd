import { AdminToken, bearerToken, isLoopbackAddress, isLoopbackHost } from './admin-access.guard';

describe('bearerToken (the Authorization header)', () => {
  it('reads the token of "Bearer <token>", the scheme in any case', () => {
    expect(bearerToken('Bearer 0123456789abcdef')).toBe('0123456789abcdef');
    expect(bearerToken('bearer abc+/=')).toBe('abc+/=');
    expect(bearerToken('BEARER  abc ')).toBe('abc');
  });

  it.each([undefined, '', 'Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', 'Bearertoken', 'Bearer a b', 'token'])(
    'finds no token in %j',
    (header) => {
      expect(bearerToken(header)).toBeUndefined();
    },
  );
});

describe('AdminToken', () => {
  const token = new AdminToken('0123456789abcdef');

  it('matches the token itself only', () => {
    expect(token.matches('0123456789abcdef')).toBe(true);
    expect(token.matches('0123456789abcdeF')).toBe(false);
    expect(token.matches('0123456789abcde')).toBe(false);
  });

  it('compares tokens of any length (digests of the same size), the empty one included', () => {
    expect(token.matches('')).toBe(false);
    expect(token.matches('x'.repeat(10_000))).toBe(false);
    expect(token.matches('0123456789abcdef0')).toBe(false);
  });
});

describe('isLoopbackAddress (a socket remote address)', () => {
  it.each(['127.0.0.1', '127.1.2.3', '127.255.255.255', '::1', '::ffff:127.0.0.1', '::ffff:127.9.9.9'])(
    'takes %s for loopback',
    (address) => {
      expect(isLoopbackAddress(address)).toBe(true);
    },
  );

  it.each([
    '192.0.2.2',
    '10.0.0.1',
    '128.0.0.1',
    '0.0.0.0',
    '::',
    '::ffff:192.0.2.2',
    '::2',
    'fd00::2',
    'fe80::1%eth0',
    '::127.0.0.1',
    'localhost',
    '',
    undefined,
  ])('does not take %j for loopback', (address) => {
    expect(isLoopbackAddress(address)).toBe(false);
  });
});

describe('isLoopbackHost (the Host header, when ADMIN_TOKEN is not set)', () => {
  it.each([
    'localhost',
    'localhost:3000',
    'LocalHost.:3000',
    '127.0.0.1',
    '127.0.0.1:3000',
    '127.1.2.3:80',
    '[::1]',
    '[::1]:3000',
    '[::ffff:127.0.0.1]:3000',
    undefined,
  ])('takes %j for loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });

  it.each([
    'evil.example',
    'evil.example:3000',
    'localhost.evil.example',
    'sub.localhost',
    '192.0.2.2:3000',
    '[fd00::2]:3000',
    '::1',
    '[::1',
    'localhost:3000:3000',
    'evil.example@127.0.0.1',
    '',
  ])('does not take %j for loopback', (host) => {
    expect(isLoopbackHost(host)).toBe(false);
  });
});
