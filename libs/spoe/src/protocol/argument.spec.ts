import { SpoeArgument } from './notify';
import { SpoeIp } from './ip';
import { SpoeDataType, TypedData } from './typed-data';
import { SpoeEncodeError } from './errors';

describe('SpoeArgument.typed(): the value with the wire type it came with', () => {
  it('keeps the raw bytes of a STRING that is not valid UTF-8', () => {
    const frame = Buffer.from([0x00, 0x66, 0xff, 0xfe, 0x6f, 0x00]);
    const argument = new SpoeArgument('s', SpoeDataType.String, frame.subarray(1, 5).toString('utf8'), frame, 1, 5);
    const echoed = argument.typed();
    expect(echoed.type).toBe(SpoeDataType.String);
    expect(echoed.value).toEqual(Buffer.from([0x66, 0xff, 0xfe, 0x6f]));
  });

  it('keeps a small INT64 an INT64 and an IPv4-mapped IPV6 an IPV6', () => {
    expect(new SpoeArgument('n', SpoeDataType.Int64, 5).typed()).toEqual(TypedData.int64(5));
    const mapped = SpoeIp.parse('::ffff:10.0.0.1');
    expect(new SpoeArgument('ip', SpoeDataType.Ipv6, mapped).typed()).toEqual(TypedData.ipv6(mapped));
  });

  it.each([
    [SpoeDataType.Null, null],
    [SpoeDataType.Boolean, true],
    [SpoeDataType.Int32, -7],
    [SpoeDataType.Uint32, 4000000000],
    [SpoeDataType.Uint64, 2n ** 64n - 1n],
    [SpoeDataType.Ipv4, SpoeIp.parse('192.0.2.1')],
    [SpoeDataType.Binary, Buffer.from([1, 2, 3])],
  ])('type %i round-trips through TypedData.of', (type, value) => {
    expect(TypedData.of(type, value)).toMatchObject({ type, value });
  });

  it('TypedData.of checks the value against the type', () => {
    expect(() => TypedData.of(SpoeDataType.Int32, 2 ** 40)).toThrow(SpoeEncodeError);
    expect(() => TypedData.of(15 as SpoeDataType, 1)).toThrow(SpoeEncodeError);
  });
});
