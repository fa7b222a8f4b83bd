/**
 * The chart of BENCHMARKS.md: bench/results/frames.svg, drawn by vega-lite from bench/results/frames.json (never by
 * hand), rendered headless to SVG with vega (no browser, no canvas package).
 */
import type * as Vega from 'vega';
import type * as VegaLite from 'vega-lite';
import type { Summary } from '../frames.bench';
import { fixed, int } from '../support/report';

/**
 * A real import(). vega and vega-lite are ES modules, and vega's graph has a top-level await (vega-canvas probes for
 * the optional `canvas` package), which require() cannot load; the CommonJS transpile of the bench scripts (swc) turns
 * every `import()` written in TypeScript into require(). Built with Function, the import() stays a native one.
 */
const importModule = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

/** One bar: an agent's median in one configuration, for one metric. */
interface Bar {
  readonly configuration: string;
  readonly agent: string;
  readonly metric: string;
  readonly value: number;
  readonly label: string;
}

const FRAMES = 'frames/s';
const CPU = 'agent CPU µs/frame';

function configurationName(s: Pick<Summary, 'connections' | 'inflight'>): string {
  return `${s.connections} conn × ${s.inflight} in flight`;
}

function bars(summaries: readonly Summary[]): Bar[] {
  return summaries.flatMap((s) => [
    {
      configuration: configurationName(s),
      agent: s.agent,
      metric: FRAMES,
      value: s.framesPerSecond,
      label: compact(s.framesPerSecond),
    },
    {
      configuration: configurationName(s),
      agent: s.agent,
      metric: CPU,
      value: s.agentCpuUsPerFrame,
      label: fixed(s.agentCpuUsPerFrame < 10 ? 2 : 1)(s.agentCpuUsPerFrame),
    },
  ]);
}

/** 15.3k, 1.65M: a label that fits above a bar. */
function compact(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return int(n);
}

/**
 * Grouped bars: a column per configuration, a row per metric (frames/s; the agent's CPU per frame, the figure that
 * holds on a shared machine), a bar per agent. Each cell has its own y scale: 1×1 and 16×64 differ 100-fold.
 */
export function framesChartSpec(
  summaries: readonly Summary[],
  agents: readonly string[],
  title: readonly string[],
): VegaLite.TopLevelSpec {
  const configurations = [...new Set(summaries.map(configurationName))];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: [...title],
      subtitle: [
        'frames/s: higher is better',
        'agent CPU µs per frame (the kernel’s accounting of the agent process): lower is better',
      ],
      anchor: 'start',
      fontSize: 14,
    },
    background: 'white',
    padding: 12,
    data: { values: bars(summaries) },
    facet: {
      row: {
        field: 'metric',
        type: 'nominal',
        sort: [FRAMES, CPU],
        title: null,
        header: { labelAngle: -90, labelOrient: 'left', labelFontSize: 12, labelFontWeight: 'bold' },
      },
      column: {
        field: 'configuration',
        type: 'nominal',
        sort: configurations,
        title: null,
        header: { labelFontSize: 12, labelFontWeight: 'bold' },
      },
    },
    spec: {
      width: Math.max(150, agents.length * 34),
      height: 170,
      layer: [
        {
          mark: { type: 'bar' },
          encoding: {
            color: { field: 'agent', type: 'nominal', sort: [...agents], legend: null, scale: { scheme: 'tableau10' } },
          },
        },
        {
          mark: { type: 'text', dy: -5, fontSize: 10, color: '#333' },
          encoding: { text: { field: 'label', type: 'nominal' } },
        },
      ],
      encoding: {
        x: { field: 'agent', type: 'nominal', sort: [...agents], title: null, axis: { labelAngle: -35 } },
        y: { field: 'value', type: 'quantitative', title: null, axis: { format: '~s', tickCount: 5 } },
      },
    },
    resolve: { scale: { y: 'independent' } },
  };
}

/** The spec compiled by vega-lite and rendered by vega's headless view: an SVG document. */
export async function renderSvg(spec: VegaLite.TopLevelSpec): Promise<string> {
  const vega = (await importModule('vega')) as typeof Vega;
  const vegaLite = (await importModule('vega-lite')) as typeof VegaLite;
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
