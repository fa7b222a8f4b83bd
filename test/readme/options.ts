import { SpoeServer, VarScope } from 'nestjs-spoe';

export const server = new SpoeServer({
  host: '0.0.0.0',
  port: 12345, // or path: '/run/haproxy/agent.sock'
  maxFrameSize: 16380,
  maxInFlightPerConnection: 64,
  handlerDeadlineMs: 1000,
  // On a handler failure or a missed deadline, also set txn.<var-prefix>.agent_error to 1 (failed) or 2 (deadline).
  errorVariable: { scope: VarScope.Transaction, name: 'agent_error' },
});
