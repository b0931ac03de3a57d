/**
 * The "Datasets" section: every dataset of the workspace from `GET /mlops-workbench/datasets`,
 * with its latest version and rows, the status of its newest validation and its open alerts.
 */
import { ISectionOptions, ListSection, el } from './panel';
import { dashboardLink } from './dashboards';

/** How a validation ended (`validation_reports.status`). */
export type ValidationStatus = 'passed' | 'warned' | 'quarantined' | 'blocked';

/** One dataset, as `mlops_workbench.ui.dataset_summaries` describes it. */
export interface IDatasetSummary {
  name: string;
  /** `raw`, `processed`, `validated` or `quarantine`. */
  kind: string;
  /** Latest version (the Delta table version). */
  version: number;
  /** Rows at the latest version. */
  rows: number;
  /** When the latest version was written (ISO 8601, UTC). */
  created_at: string;
  /** Status of the newest validation report; null when the dataset was never validated. */
  validation: ValidationStatus | null;
  /** The version that report validated. */
  validated_version: number | null;
  /** Alerts on `dataset:<name>` that are firing or acknowledged. */
  open_alerts: number;
}

/** Body of `GET /mlops-workbench/datasets`. */
export interface IDatasetsResponse {
  workspace: string;
  datasets: IDatasetSummary[];
}

export class DatasetsSection extends ListSection<IDatasetsResponse, IDatasetSummary> {
  constructor(options: Partial<ISectionOptions> = {}) {
    super(
      { name: 'datasets', title: 'Datasets', ...options },
      {
        route: 'datasets',
        items: b => b.datasets,
        listClass: 'mlw-dataset-list',
        empty: ['No datasets yet. Ingest one with ', 'mlops_workbench.data.ingest.ingest'],
        render: renderDataset
      }
    );
  }
}

function renderDataset(d: IDatasetSummary): HTMLLIElement {
  const status = d.validation ?? 'none';
  const item = el('li', `mlw-dataset mlw-status-${status}`);
  item.dataset.dataset = d.name;
  item.dataset.validation = status;
  item.title = [
    `${d.name} (${d.kind}) v${d.version}, ${d.rows.toLocaleString()} rows, written ${d.created_at}`,
    `${d.open_alerts} open alerts`,
    d.validation === null
      ? 'never validated'
      : `newest validation: ${d.validation} (v${d.validated_version}${d.validated_version === d.version ? '' : `; latest is v${d.version}`})`
  ].join('\n');

  const line1 = el('span', 'mlw-dataset-line');
  const badge = el('span', `mlw-badge mlw-badge-${status}`, d.validation ?? 'not validated');
  badge.title = d.validation === null ? 'never validated' : `newest validation report: ${d.validation}`;
  line1.append(nameElement(d.name, 'mlw-dataset-name'), badge);

  const line2 = el('span', 'mlw-dataset-line mlw-dataset-meta');
  line2.append(
    el('span', 'mlw-dataset-kind', d.kind),
    el('span', 'mlw-dataset-version', `v${d.version}`),
    el('span', 'mlw-dataset-rows', `${d.rows.toLocaleString()} rows`)
  );
  if (d.open_alerts > 0) {
    line2.append(el('span', 'mlw-dataset-alerts', d.open_alerts === 1 ? '1 open alert' : `${d.open_alerts} open alerts`));
  }
  item.append(dashboardLink('data-quality', { dataset: d.name }, `dataset ${d.name}`, [line1, line2], item.title));
  return item;
}

/**
 * A name (of a dataset, a feature view) that may wrap after its underscores: in a narrow sidebar
 * the end of `applications_quarantine` tells it from `applications_validated`, so it is never cut off.
 */
export function nameElement(name: string, className: string): HTMLSpanElement {
  const node = el('span', className);
  name.split('_').forEach((part, i, parts) => {
    node.append(i < parts.length - 1 ? `${part}_` : part);
    if (i < parts.length - 1) {
      node.append(document.createElement('wbr'));
    }
  });
  return node;
}
