import { Controller, Logger } from '@nestjs/common';
import { Ctx, MessagePattern } from '@nestjs/microservices';
import { SetVar, SpoeArgument, SpoeContext, SpoeDataType, SpoeIp, TypedData } from 'nestjs-spoe';

const VARIABLE_NAME = /^[A-Za-z0-9._]+$/;

/**
 * Diagnostics: `echo` returns each argument as a `txn` variable of the same name and wire type, so a HAProxy
 * configuration can check what reaches the agent and what comes back (`var(txn.<var-prefix>.<name>)`).
 */
@Controller()
export class EchoController {
  private readonly log = new Logger(EchoController.name);

  @MessagePattern('echo')
  echo(@Ctx() context: SpoeContext): SetVar[] {
    const actions: SetVar[] = [];
    const seen = new Set<string>();
    for (const argument of context.getArguments()) {
      // HAProxy drops variables with other characters; a repeated name would only overwrite the first.
      if (!VARIABLE_NAME.test(argument.name) || seen.has(argument.name)) {
        this.log.debug(`echo: skipping argument ${JSON.stringify(argument.name)}`);
        continue;
      }
      seen.add(argument.name);
      actions.push(SetVar.txn(argument.name, sameWireType(argument)));
    }
    return actions;
  }
}

/** The argument's value with its own wire type: a small INT64 stays INT64, a STRING keeps its raw bytes. */
export function sameWireType(argument: SpoeArgument): TypedData {
  const value = argument.value;
  switch (argument.type) {
    case SpoeDataType.Null:
      return TypedData.null();
    case SpoeDataType.Boolean:
      return TypedData.boolean(value as boolean);
    case SpoeDataType.Int32:
      return TypedData.int32(value as number);
    case SpoeDataType.Uint32:
      return TypedData.uint32(value as number);
    case SpoeDataType.Int64:
      return TypedData.int64(value as number | bigint);
    case SpoeDataType.Uint64:
      return TypedData.uint64(value as number | bigint);
    case SpoeDataType.Ipv4:
      return TypedData.ipv4(value as SpoeIp);
    case SpoeDataType.Ipv6:
      return TypedData.ipv6(value as SpoeIp);
    case SpoeDataType.String:
      return TypedData.stringBytes(argument.bytes ?? Buffer.from(value as string));
    case SpoeDataType.Binary:
      return TypedData.binary(value as Buffer);
  }
}
