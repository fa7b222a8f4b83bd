import { SpoeArgument, SpoeDataType, SpoeIp, TypedData } from 'nestjs-spoe';
import { sameWireType } from './echo.controller';

describe('sameWireType (echo)', () => {
  it('keeps the raw bytes of a STRING that is not valid UTF-8', () => {
    const frame = Buffer.from([0x00, 0x66, 0xff, 0xfe, 0x6f, 0x00]);
    const argument = new SpoeArgument('s', SpoeDataType.String, frame.subarray(1, 5).toString('utf8'), frame, 1, 5);
    const echoed = sameWireType(argument);
    expect(echoed.type).toBe(SpoeDataType.String);
    expect(echoed.value).toEqual(Buffer.from([0x66, 0xff, 0xfe, 0x6f]));
  });

  it('keeps a small INT64 an INT64 and an IPv4-mapped IPV6 an IPV6', () => {
    expect(sameWireType(new SpoeArgument('n', SpoeDataType.Int64, 5))).toEqual(TypedData.int64(5));
    const mapped = SpoeIp.parse('::ffff:10.0.0.1');
    expect(sameWireType(new SpoeArgument('ip', SpoeDataType.Ipv6, mapped))).toEqual(TypedData.ipv6(mapped));
  });
});
