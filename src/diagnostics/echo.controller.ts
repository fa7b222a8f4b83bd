import { Controller, Logger } from '@nestjs/common';
import { Ctx, MessagePattern } from '@nestjs/microservices';
import { isVariableName, SetVar, SpoeContext } from 'nestjs-spoe';

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
      if (!isVariableName(argument.name) || seen.has(argument.name)) {
        this.log.debug(`echo: skipping argument ${JSON.stringify(argument.name)}`);
        continue;
      }
      seen.add(argument.name);
      actions.push(SetVar.txn(argument.name, argument.typed()));
    }
    return actions;
  }
}
