/** HAProxy's SPOE log lines (`log global` in the spoe-agent section), parsed. */

/**
 * One `SPOE: [agent] <EVENT|GROUP:name> sid=N st=S …` log line.
 * 2.x: `… st=S reqT/qT/wT/resT/pT idles/applets sending/waiting errors/processed`; 3.x: `… st=S pT errors/processed`.
 */
export interface SpoeLogEvent {
  readonly agent: string;
  readonly kind: 'EVENT' | 'GROUP';
  /** The event name (e.g. on-frontend-http-request), or the group name for a GROUP line. */
  readonly event: string;
  /** HAProxy's stream id (uniq_id). */
  readonly sid: number;
  /** 0 success; 1 timeout, 2 resource, 3 too big, 4 interrupted, 255 unknown; 256+N an SPOP (I/O-level) error N. */
  readonly st: number;
  /** Processing time (ms), -1 when interrupted. */
  readonly pT: number;
  /** The timing fields as printed (2.x: reqT, qT, wT, resT, pT; 3.x: pT). */
  readonly times: readonly number[];
  /** The agent's cumulative counters printed at the end of the line: `<nb_errors>/<nb_processed>`. */
  readonly errors: number;
  readonly processed: number;
  readonly raw: string;
  /** PID of the HAProxy process that printed it. */
  readonly pid: number;
}

const SPOE_LOG = /SPOE: \[([^\]]+)\] <(EVENT|GROUP):([^>]+)> sid=(\d+) st=(\d+) (\S+)(.*?) (\d+)\/(\d+)\s*$/;

/** Parses one SPOE log line; undefined for other lines. */
export function parseSpoeLogLine(text: string, pid: number): SpoeLogEvent | undefined {
  const m = SPOE_LOG.exec(text);
  if (!m) return undefined;
  const times = m[6].split('/').map(Number);
  return {
    agent: m[1],
    kind: m[2] as 'EVENT' | 'GROUP',
    event: m[3],
    sid: Number(m[4]),
    st: Number(m[5]),
    pT: times[times.length - 1],
    times,
    errors: Number(m[8]),
    processed: Number(m[9]),
    raw: text,
    pid,
  };
}
