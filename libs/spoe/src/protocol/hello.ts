import { ByteWriter } from './byte-writer';
import { SpopHelloError, SpopInvalidFrameError } from './errors';
import { encodeFrame, Frame, FrameFlag, FrameType, payloadReader, writeFrame } from './frame';
import { KvItem, readKvList, writeKvList } from './kv-list';
import { SpopStatus } from './status';
import { SpoeDataType, SpoeEncodable, TypedData } from './typed-data';

/** The SPOP version this library speaks. */
export const SPOP_VERSION = '2.0';

/** No peer may announce a max-frame-size below this (SPOE.txt 3.2). */
export const MIN_FRAME_SIZE = 256;

/** Capabilities of SPOE.txt 3.2.1. */
export type SpopCapability = 'pipelining' | 'async' | 'fragmentation';

/** HAPROXY-HELLO items (SPOE.txt 3.2.4). */
export interface HaproxyHello {
  /** As sent, e.g. "2.0" or "2.0, 1.5". */
  readonly supportedVersions: string;
  readonly maxFrameSize: number;
  /** Trimmed, empty entries dropped; unknown capabilities are kept. */
  readonly capabilities: readonly string[];
  /** True when the HELLO comes from a health check (`option spop-check`): answer it, then close. */
  readonly healthcheck: boolean;
  /** Identifies the HAProxy SPOE engine (absent in health checks). */
  readonly engineId?: string;
}

/** AGENT-HELLO items (SPOE.txt 3.2.5). */
export interface AgentHello {
  readonly version: string;
  readonly maxFrameSize: number;
  readonly capabilities: readonly string[];
}

/** Decodes a HAPROXY-HELLO. Missing mandatory items raise the status the spec assigns (5, 6, 7). */
export function decodeHaproxyHello(frame: Frame): HaproxyHello {
  const items = readKvList(payloadReader(frame), 'HAPROXY-HELLO');
  const versions = item(items, 'supported-versions', SpoeDataType.String, SpopStatus.NoVersion) as string;
  const maxFrameSize = item(items, 'max-frame-size', SpoeDataType.Uint32, SpopStatus.NoMaxFrameSize) as number;
  const capabilities = item(items, 'capabilities', SpoeDataType.String, SpopStatus.NoCapabilities) as string;
  const healthcheck = optionalItem(items, 'healthcheck', SpoeDataType.Boolean) as boolean | undefined;
  const engineId = optionalItem(items, 'engine-id', SpoeDataType.String) as string | undefined;
  return {
    supportedVersions: versions,
    maxFrameSize,
    capabilities: splitList(capabilities),
    healthcheck: healthcheck ?? false,
    ...(engineId !== undefined && { engineId }),
  };
}

/** Decodes an AGENT-HELLO (what a HAProxy-side client receives). */
export function decodeAgentHello(frame: Frame): AgentHello {
  const items = readKvList(payloadReader(frame), 'AGENT-HELLO');
  return {
    version: item(items, 'version', SpoeDataType.String, SpopStatus.NoVersion) as string,
    maxFrameSize: item(items, 'max-frame-size', SpoeDataType.Uint32, SpopStatus.NoMaxFrameSize) as number,
    capabilities: splitList(item(items, 'capabilities', SpoeDataType.String, SpopStatus.NoCapabilities) as string),
  };
}

/** What the agent is willing to do, for {@link negotiateHello}. */
export interface AgentHelloPolicy {
  /** The agent's own frame size limit. */
  readonly maxFrameSize: number;
  /** Capabilities the agent supports; only those HAProxy also announces are returned. */
  readonly capabilities: readonly SpopCapability[];
}

/**
 * The agent's answer to a HAPROXY-HELLO: version 2.0, the smaller of both frame sizes, and the capabilities both
 * sides announce. Throws {@link SpopHelloError} with status 8 (no 2.x version offered) or 9 (frame size below 256).
 */
export function negotiateHello(hello: HaproxyHello, policy: AgentHelloPolicy): AgentHello {
  if (!supportsVersion(hello.supportedVersions, SPOP_VERSION)) {
    throw new SpopHelloError(
      SpopStatus.UnsupportedVersion,
      `unsupported version: HAProxy offers "${hello.supportedVersions}", agent speaks ${SPOP_VERSION}`,
    );
  }
  if (hello.maxFrameSize < MIN_FRAME_SIZE) {
    throw new SpopHelloError(
      SpopStatus.BadFrameSize,
      `max-frame-size ${hello.maxFrameSize} is below ${MIN_FRAME_SIZE}`,
    );
  }
  return {
    version: SPOP_VERSION,
    maxFrameSize: Math.min(hello.maxFrameSize, policy.maxFrameSize),
    capabilities: policy.capabilities.filter((c) => hello.capabilities.includes(c)),
  };
}

/**
 * Whether a "supported-versions" list covers `version`. "2.0, 1.5" means 2.0 and 1.0 to 1.5: a major version is
 * supported up to the announced minor. Spaces are ignored; malformed entries support nothing.
 */
export function supportsVersion(supportedVersions: string, version: string): boolean {
  const wanted = parseVersion(version);
  if (!wanted) return false;
  return splitList(supportedVersions).some((entry) => {
    const v = parseVersion(entry);
    return v !== undefined && v.major === wanted.major && v.minor >= wanted.minor;
  });
}

export function encodeHaproxyHello(hello: HaproxyHello): Buffer {
  const items: Array<[string, SpoeEncodable]> = [
    ['supported-versions', hello.supportedVersions],
    ['max-frame-size', TypedData.uint32(hello.maxFrameSize)],
    ['capabilities', hello.capabilities.join(',')],
  ];
  if (hello.healthcheck) items.push(['healthcheck', true]);
  if (hello.engineId !== undefined) items.push(['engine-id', hello.engineId]);
  return encodeFrame(
    Math.max(hello.maxFrameSize, MIN_FRAME_SIZE),
    FrameType.HaproxyHello,
    FrameFlag.Fin,
    0,
    0,
    writeKvList,
    items,
  );
}

/** Writes an AGENT-HELLO frame (a HELLO fits the 256-byte minimum by construction). */
export function writeAgentHello(w: ByteWriter, hello: AgentHello): void {
  writeFrame(w, FrameType.AgentHello, FrameFlag.Fin, 0, 0, writeKvList, helloItems(hello));
}

export function encodeAgentHello(hello: AgentHello): Buffer {
  return encodeFrame(MIN_FRAME_SIZE, FrameType.AgentHello, FrameFlag.Fin, 0, 0, writeKvList, helloItems(hello));
}

function helloItems(hello: AgentHello): Array<[string, SpoeEncodable]> {
  return [
    ['version', hello.version],
    ['max-frame-size', TypedData.uint32(hello.maxFrameSize)],
    ['capabilities', hello.capabilities.join(',')],
  ];
}

type MissingItemStatus = SpopStatus.NoVersion | SpopStatus.NoMaxFrameSize | SpopStatus.NoCapabilities;

function item(items: Map<string, KvItem>, key: string, type: SpoeDataType, missing: MissingItemStatus): unknown {
  const found = items.get(key);
  if (!found) throw new SpopHelloError(missing, `${key} value not found`);
  if (found.type !== type)
    throw new SpopInvalidFrameError(`${key}: expected ${SpoeDataType[type]}, got ${SpoeDataType[found.type]}`);
  return found.value;
}

function optionalItem(items: Map<string, KvItem>, key: string, type: SpoeDataType): unknown {
  const found = items.get(key);
  if (!found) return undefined;
  if (found.type !== type)
    throw new SpopInvalidFrameError(`${key}: expected ${SpoeDataType[type]}, got ${SpoeDataType[found.type]}`);
  return found.value;
}

function splitList(list: string): string[] {
  return list
    .split(',')
    .map((s) => s.replace(/\s+/g, ''))
    .filter((s) => s.length > 0);
}

function parseVersion(text: string): { major: number; minor: number } | undefined {
  const m = /^(\d+)\.(\d+)$/.exec(text.replace(/\s+/g, ''));
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}
