export * from './spoe-client';
