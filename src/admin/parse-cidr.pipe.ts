import { ArgumentMetadata, BadRequestException, Injectable, PipeTransform } from '@nestjs/common';
import { Cidr } from '../reputation/cidr';

/**
 * A query or route parameter as a {@link Cidr}: an address or a network, IPv4 or IPv6
 * (`@Query('cidr', ParseCidrPipe) cidr: Cidr`). A missing or malformed one is a 400 naming the parameter.
 */
@Injectable()
export class ParseCidrPipe implements PipeTransform<unknown, Cidr> {
  transform(value: unknown, metadata: ArgumentMetadata): Cidr {
    const name = metadata.data ?? 'cidr';
    if (typeof value !== 'string')
      throw new BadRequestException(`${metadata.type} parameter "${name}" is required (an IP address or CIDR)`);
    try {
      return Cidr.parse(value.trim());
    } catch (error) {
      throw new BadRequestException(`"${name}": ${(error as Error).message}`);
    }
  }
}
