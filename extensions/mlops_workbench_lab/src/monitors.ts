/**
 * The "Monitors" section: every model monitor of the workspace from `GET /mlops-workbench/monitors`: its model, its
 * newest run's status as a badge (`ok`, `breached`, `empty`), the drift share against the monitor's bound, the
 * features that drifted, the kinds that breached, when it ran, and how many of its alerts are open.
 */
import { ISectionOptions, ListSection, el } from './panel';
import { dashboardLink } from './dashboards';
import { formatAge } from './features';
import { nameElement } from './datasets';
import { percent } from './environments';

/** What a monitor run concluded (`mlops_workbench.monitoring.monitors.MonitorRun.status`). */
export type MonitorStatus = 'ok' | 'breached' | 'empty';

/** A monitor's newest run. */
export interface IMonitorRunSummary {
  id: number;
  status: MonitorStatus;
  run_at: string;
  window_start: string | null;
  window_end: string | null;
  version: number | null;
  current_rows: number;
  /** 0..1, null when the run compared no features. */
  drift_share: number | null;
  /** The monitor's bound on the drift share. */
  drift_bound: number;
  /** How many features it checked. */
  features: number;
  drifted_columns: string[];
  /** The kinds that breached: data_drift, prediction_drift, performance, estimated_performance, concept_drift. */
  breached: string[];
  /** Why an `empty` run decided nothing. */
  note: string | null;
}

/** One monitor, as `mlops_workbench.ui.monitoring.monitor_summaries` describes it. */
export interface IMonitorSummary {
  name: string;
  model: string;
  environment: string;
  window: string;
  schedule: string | null;
  last_run: IMonitorRunSummary | null;
  open_alerts: number;
}

/** Body of `GET /mlops-workbench/monitors`. */
export interface IMonitorsResponse {
  workspace: string;
  monitors: IMonitorSummary[];
}

export class MonitorsSection extends ListSection<IMonitorsResponse, IMonitorSummary> {
  constructor(options: Partial<ISectionOptions> = {}) {
    super(
      { name: 'monitors', title: 'Monitors', ...options },
      {
        route: 'monitors',
        items: b => b.monitors,
        listClass: 'mlw-monitor-list',
        empty: ['No monitors. Define one with ', 'mlw monitor define FILE.yaml'],
        render: renderMonitor
      }
    );
  }
}

function renderMonitor(m: IMonitorSummary): HTMLLIElement {
  const r = m.last_run;
  const status = r ? r.status : 'never';
  const item = el('li', `mlw-monitor mlw-monitor-${status}`);
  item.dataset.monitor = m.name;
  item.dataset.status = status;
  item.title = [
    `monitor ${m.name} watches ${m.model} in ${m.environment}, window ${m.window}${m.schedule ? `, every ${m.schedule}` : ''}`,
    r
      ? `run ${r.id} at ${r.run_at}: ${r.status}${r.breached.length ? ` (${r.breached.join(', ')})` : ''}; ${r.current_rows} rows, window to ${r.window_end}`
      : `never ran: mlw run monitor -p monitor ${m.name}`,
    r && r.note ? r.note : ''
  ]
    .filter(line => line)
    .join('\n');

  const line1 = el('span', 'mlw-monitor-line');
  line1.append(nameElement(m.name, 'mlw-monitor-name'));
  const badge = el('span', `mlw-badge mlw-badge-${status}`, r ? r.status : 'never ran');
  badge.title = r ? `run ${r.id}: ${r.status}` : 'this monitor has not run yet';
  line1.append(badge);
  const link = dashboardLink('monitoring', { monitor: m.name }, `monitor ${m.name}`, [line1], item.title);
  item.append(link);

  const line2 = el('span', 'mlw-monitor-line mlw-monitor-meta');
  line2.append(el('span', 'mlw-monitor-model', `${m.model}${r && r.version !== null ? ` v${r.version}` : ''}`));
  if (r) {
    const at = Date.parse(r.run_at);
    line2.append(el('span', 'mlw-monitor-age', Number.isNaN(at) ? r.run_at : `${formatAge((Date.now() - at) / 1000)} ago`));
  }
  link.append(line2);

  if (r && r.drift_share !== null) {
    const drift = el('span', 'mlw-monitor-line mlw-monitor-drift');
    const share = el('span', 'mlw-monitor-share', `drift ${percent(r.drift_share)}`);
    share.title = `share of features drifted; the monitor's bound is ${percent(r.drift_bound)}`;
    share.dataset.over = String(r.drift_share >= r.drift_bound);
    drift.append(share, el('span', 'mlw-monitor-count', `${r.drifted_columns.length} of ${r.features} features`));
    item.append(drift);
    if (r.drifted_columns.length > 0) {
      item.append(el('span', 'mlw-monitor-drifted', r.drifted_columns.join(', ')));
    }
  } else if (r && r.note) {
    item.append(el('span', 'mlw-monitor-note', 'too few rows to decide'));
  }
  if (m.open_alerts > 0) {
    item.append(el('span', 'mlw-monitor-alerts', `${m.open_alerts} open alert${m.open_alerts === 1 ? '' : 's'}`));
  }
  return item;
}
