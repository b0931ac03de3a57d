/**
 * The "Feature views" section: every feature view of the workspace from `GET /mlops-workbench/features`,
 * with its latest version, its newest build (rows, freshness) and its newest materialization.
 */
import { ISectionOptions, ListSection, el } from './panel';
import { nameElement } from './datasets';
import { dashboardLink } from './dashboards';

/** How a materialization into the online store went (`materializations.status`). */
export type MaterializationStatus = 'running' | 'complete' | 'failed';

/** The newest build of a view's latest version (`FeatureBuild`, times in ISO 8601). */
export interface IFeatureBuild {
  id: number;
  view_version: number;
  /** The dataset read, and its version. */
  source: string;
  source_version: number;
  /** The offline table written (a dataset of kind `features`), and its version. */
  table: string;
  table_version: number;
  rows: number;
  min_event_time: string | null;
  max_event_time: string | null;
  created_at: string;
}

/** The newest materialization of a view's latest version (`Materialization`, times in ISO 8601). */
export interface IMaterialization {
  id: number;
  view_version: number;
  /** The online store URI (password hidden). */
  store: string;
  start: string | null;
  end: string;
  status: MaterializationStatus;
  rows: number;
  error: string | null;
  started_at: string;
  ended_at: string | null;
}

/** One feature view, as `mlops_workbench.ui.features.feature_view_summaries` describes it. */
export interface IFeatureViewSummary {
  name: string;
  /** Latest version. */
  version: number;
  /** `batch` (computed into the offline store) or `on_demand` (computed at lookup time). */
  kind: 'batch' | 'on_demand';
  entity: string | null;
  /** The dataset it reads (on-demand views: the views it reads, comma-separated). */
  source: string;
  features: string[];
  /** `30d`, `12h`...; null: no limit. */
  ttl: string | null;
  owner: string;
  /** First 12 hex digits of the definition hash. */
  hash: string;
  applied_at: string;
  /** Null when the latest version was never built. */
  build: IFeatureBuild | null;
  /** Seconds from the newest event of that build to the server's clock. */
  freshness_s: number | null;
  /** Whether lookups now find only values older than the TTL. */
  expired: boolean;
  /** Null when the latest version was never materialized. */
  materialization: IMaterialization | null;
  /** End of the newest complete materialization: what the online store can serve. */
  online_until: string | null;
  /** What to do next (build it, materialize it), or ''. */
  note: string;
}

/** Body of `GET /mlops-workbench/features`. */
export interface IFeaturesResponse {
  workspace: string;
  views: IFeatureViewSummary[];
}

export class FeaturesSection extends ListSection<IFeaturesResponse, IFeatureViewSummary> {
  constructor(options: Partial<ISectionOptions> = {}) {
    super(
      { name: 'features', title: 'Feature views', ...options },
      {
        route: 'features',
        items: b => b.views,
        listClass: 'mlw-feature-list',
        empty: ['No feature views yet. Apply definitions with ', 'mlw features apply FILE'],
        render: renderView
      }
    );
  }
}

function renderView(v: IFeatureViewSummary): HTMLLIElement {
  const m = v.materialization;
  const status = v.kind === 'on_demand' ? 'on_demand' : (m?.status ?? 'none');
  const item = el('li', `mlw-feature-view mlw-status-${status}`);
  item.dataset.view = v.name;
  item.dataset.materialization = m?.status ?? 'none';
  item.title = [
    `${v.name} v${v.version} (${v.kind}), hash ${v.hash}`,
    `entity ${v.entity ?? '-'}, from ${v.source}, ttl ${v.ttl ?? 'none'}${v.owner ? `, owner ${v.owner}` : ''}`,
    `features: ${v.features.join(', ')}`,
    v.build
      ? `build ${v.build.id}: ${v.build.source} v${v.build.source_version} -> ${v.build.table} v${v.build.table_version}, newest event ${v.build.max_event_time}`
      : 'not built',
    m ? `materialization ${m.id}: ${m.status}, ${m.rows.toLocaleString()} rows into ${m.store}${m.error ? `: ${m.error}` : ''}` : 'not materialized',
    v.note
  ]
    .filter(line => line)
    .join('\n');

  const line1 = el('span', 'mlw-feature-line');
  const label = v.kind === 'on_demand' ? 'on demand' : (m?.status ?? 'not materialized');
  const badge = el('span', `mlw-badge mlw-badge-${status}`, label);
  badge.title = v.kind === 'on_demand' ? 'computed at lookup time' : 'newest materialization into the online store';
  line1.append(nameElement(v.name, 'mlw-feature-name'), badge);

  const line2 = el('span', 'mlw-feature-line mlw-feature-meta');
  line2.append(
    el('span', 'mlw-feature-version', `v${v.version}`),
    el('span', 'mlw-feature-count', v.features.length === 1 ? '1 feature' : `${v.features.length} features`)
  );
  if (v.build) {
    line2.append(el('span', 'mlw-feature-rows', `${v.build.rows.toLocaleString()} rows`));
  }
  if (v.kind === 'batch') {
    const fresh = el('span', `mlw-feature-freshness${v.expired ? ' mlw-mod-expired' : ''}`, freshness(v));
    fresh.title = v.build?.max_event_time
      ? `newest event ${v.build.max_event_time}${v.expired ? `; older than the TTL (${v.ttl})` : ''}`
      : 'never built';
    line2.append(fresh);
    if (v.expired) {
      line2.append(el('span', 'mlw-feature-expired', `past its ${v.ttl} TTL`));
    }
  }
  item.append(dashboardLink('features', { view: v.name }, `feature view ${v.name}`, [line1, line2], item.title));
  if (v.online_until) {
    const online = el('span', 'mlw-feature-line mlw-feature-meta mlw-feature-online', 'online up to ');
    online.append(timeElement(v.online_until));
    item.append(online);
  }
  if (m?.status === 'failed' && m.error) {
    item.append(el('p', 'mlw-feature-error', m.error));
  } else if (v.note && v.kind === 'batch') {
    item.append(el('p', 'mlw-feature-note', v.note));
  }
  return item;
}

/** `newest event 3 d ago`, from the browser's clock; `not built` when there is no build. */
function freshness(v: IFeatureViewSummary): string {
  const t = v.build?.max_event_time ? Date.parse(v.build.max_event_time) : NaN;
  return Number.isNaN(t) ? 'not built' : `newest event ${formatAge((Date.now() - t) / 1000)} ago`;
}

/** `45 s`, `12 min`, `3 h`, `4 d`; as `mlops_workbench.ui.features.fmt_age`, one unit. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)} h`;
  }
  return `${Math.floor(s / 86400)} d`;
}

function timeElement(iso: string): HTMLElement {
  const node = el('time', 'mlw-feature-time');
  const date = new Date(iso);
  node.dateTime = iso;
  node.title = iso;
  node.textContent = Number.isNaN(date.getTime())
    ? iso
    : date.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  return node;
}
