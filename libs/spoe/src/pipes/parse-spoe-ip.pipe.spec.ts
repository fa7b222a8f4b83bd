import { RpcException } from '@nestjs/microservices';
import { SpoeIp } from '../protocol/ip';
import { ParseSpoeIpPipe } from './parse-spoe-ip.pipe';

describe('ParseSpoeIpPipe', () => {
  const pipe = new ParseSpoeIpPipe();

  it('passes an IPV4 or IPV6 value through', () => {
    const v6 = SpoeIp.parse('2001:db8::1');
    expect(pipe.transform(v6)).toBe(v6);
    expect(pipe.transform(SpoeIp.parse('192.0.2.1'))?.toString()).toBe('192.0.2.1');
  });

  it('parses a STRING holding an address, spaces trimmed', () => {
    expect(pipe.transform(' 198.51.100.7 ')?.toString()).toBe('198.51.100.7');
    expect(pipe.transform('2001:db8::2')?.toString()).toBe('2001:db8::2');
  });

  it('unmaps IPv4-mapped IPv6 addresses unless told not to', () => {
    expect(pipe.transform(SpoeIp.parse('::ffff:10.1.2.3'))?.toString()).toBe('10.1.2.3');
    expect(new ParseSpoeIpPipe({ unmap: false }).transform(SpoeIp.parse('::ffff:10.1.2.3'))?.toString()).toBe(
      '::ffff:10.1.2.3',
    );
  });

  it.each([
    ['nothing', undefined, 'must be an IP address, got nothing'],
    ['a string that is no address', 'nope', 'must be an IP address, got "nope"'],
    ['a number', 42, 'must be an IP address, got number 42'],
    ['BINARY', Buffer.from([1, 2]), 'must be an IP address, got 2 bytes of BINARY'],
  ])('refuses %s with an RpcException naming the argument', (_, value, message) => {
    const call = () => pipe.transform(value, { type: 'body', data: 'ip' });
    expect(call).toThrow(RpcException);
    expect(call).toThrow(`argument "ip" ${message}`);
  });

  it('lets a missing argument through as undefined when optional', () => {
    expect(new ParseSpoeIpPipe({ optional: true }).transform(undefined)).toBeUndefined();
  });

  it('throws what the exception factory builds', () => {
    const custom = new ParseSpoeIpPipe({ exceptionFactory: (message) => new TypeError(message) });
    expect(() => custom.transform('nope')).toThrow(TypeError);
  });
});
