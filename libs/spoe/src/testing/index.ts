// 'nestjs-spoe/testing': HAProxy's side of SPOP for users' tests. The client itself is production code (the health
// indicator and the spoe-health CLI use it): it lives in client/, and is re-exported here.
export * from '../client';
