/**
 * The "Alerts" section: the open (firing or acknowledged) alerts of the workspace, newest first, from
 * `GET /mlops-workbench/alerts`, each with its severity as a badge and its title.
 */
import { ISectionOptions, ListSection, el } from './panel';
import { formatAge } from './features';
import { Page, dashboardLink } from './dashboards';

/** How loud an alert is (`mlops_workbench.alerts.SEVERITIES`). */
export type Severity = 'info' | 'warning' | 'critical';

/** One open alert, as `mlops_workbench.ui.data_quality.open_alert_summaries` describes it (times in ISO 8601). */
export interface IAlertSummary {
  id: number;
  rule: string;
  severity: Severity;
  /** What it is about, e.g. `dataset:applications`. */
  source: string;
  title: string;
  status: 'firing' | 'acknowledged';
  /** When it first fired. */
  fired_at: string;
  last_seen: string;
  /** How many times it fired while open. */
  count: number;
}

/** Body of `GET /mlops-workbench/alerts`. */
export interface IAlertsResponse {
  workspace: string;
  alerts: IAlertSummary[];
}

export class AlertsSection extends ListSection<IAlertsResponse, IAlertSummary> {
  constructor(options: Partial<ISectionOptions> = {}) {
    super(
      { name: 'alerts', title: 'Alerts', ...options },
      {
        route: 'alerts',
        items: b => b.alerts,
        listClass: 'mlw-alert-list',
        empty: ['no open alerts'],
        render: renderAlert
      }
    );
  }
}

function renderAlert(a: IAlertSummary): HTMLLIElement {
  const item = el('li', `mlw-open-alert mlw-severity-${a.severity} mlw-alert-${a.status}`);
  item.dataset.alert = String(a.id);
  item.dataset.severity = a.severity;
  item.dataset.status = a.status;
  item.title = [
    `alert ${a.id} (${a.rule}) on ${a.source}: ${a.status}`,
    `fired ${a.count === 1 ? 'once' : `${a.count} times`}, first ${a.fired_at}, last ${a.last_seen}`
  ].join('\n');

  const line1 = el('span', 'mlw-open-alert-line');
  const badge = el('span', `mlw-badge mlw-badge-${a.severity}`, a.severity);
  badge.title = `severity ${a.severity}`;
  line1.append(badge, el('span', 'mlw-open-alert-title', a.title));

  const line2 = el('span', 'mlw-open-alert-line mlw-open-alert-meta');
  const fired = Date.parse(a.fired_at);
  line2.append(el('span', 'mlw-open-alert-source', a.source));
  if (a.status === 'acknowledged') {
    line2.append(el('span', 'mlw-open-alert-status', 'acknowledged'));
  }
  if (a.count > 1) {
    line2.append(el('span', 'mlw-open-alert-count', `\u00d7${a.count}`));
  }
  line2.append(el('span', 'mlw-open-alert-age', Number.isNaN(fired) ? a.fired_at : `${formatAge((Date.now() - fired) / 1000)} ago`));
  const target = alertPage(a.source);
  item.append(...(target ? [dashboardLink(target[0], target[1], `the ${a.source} of alert ${a.id}`, [line1, line2], item.title)] : [line1, line2]));
  return item;
}

/** The dashboard page showing an alert's source (`dataset:NAME`, `model:NAME`, `monitor:NAME`), or null for another kind of source. */
export function alertPage(source: string): [Page, Record<string, string>] | null {
  const at = source.indexOf(':');
  const [kind, name] = [source.slice(0, at), source.slice(at + 1)];
  if (at < 0 || !name) {
    return null;
  }
  if (kind === 'dataset') {
    return ['data-quality', { dataset: name }];
  }
  if (kind === 'model') {
    return ['model-quality', { model: name }]; // a monitor's alerts are on its model
  }
  if (kind === 'monitor') {
    return ['monitoring', { monitor: name }];
  }
  return null;
}
