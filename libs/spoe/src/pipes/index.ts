export { ParseSpoeIpPipe } from './parse-spoe-ip.pipe';
export type { ParseSpoeIpPipeOptions } from './parse-spoe-ip.pipe';
