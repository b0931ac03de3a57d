/**
 * The "Experiments" section: every searched experiment of the workspace from `GET /mlops-workbench/experiments`,
 * with its trial counts, its best trial and the state of its search.
 */
import { ISectionOptions, ListSection, el } from './panel';
import { nameElement } from './datasets';
import { dashboardLink } from './dashboards';

/**
 * Where a search stands: `running` while a search holds the study's lock, else how its MLflow parent run
 * ended, `stopped` when its process died before saying, `unknown` without a parent run.
 */
export type SearchState = 'running' | 'finished' | 'failed' | 'killed' | 'stopped' | 'unknown';

/** One experiment, as `mlops_workbench.ui.models.experiment_summaries` describes it. */
export interface IExperimentSummary {
  name: string;
  /** `binary`, `multiclass` or `regression` (null when the study holds no definition yet). */
  task: string | null;
  target: string | null;
  /** The metric the search optimises, e.g. `auc`. */
  metric: string | null;
  direction: 'maximize' | 'minimize' | null;
  /** Trials in the study, whatever their state. */
  trials: number;
  /** The experiment's trial budget; null: none (a timeout only). */
  budget: number | null;
  complete: number;
  pruned: number;
  failed: number;
  running: number;
  /** The trial the selection rule picks; null before one completed. */
  best_trial: number | null;
  best_value: number | null;
  state: SearchState;
  parent_run_id: string | null;
  /** First trial start and newest trial end (ISO 8601, UTC). */
  started_at: string | null;
  last_trial_at: string | null;
  /** Path of the standalone comparison report, when written. */
  report: string | null;
}

/** Body of `GET /mlops-workbench/experiments`. */
export interface IExperimentsResponse {
  workspace: string;
  experiments: IExperimentSummary[];
}

export class ExperimentsSection extends ListSection<IExperimentsResponse, IExperimentSummary> {
  constructor(options: Partial<ISectionOptions> = {}) {
    super(
      { name: 'experiments', title: 'Experiments', ...options },
      {
        route: 'experiments',
        items: b => b.experiments,
        listClass: 'mlw-experiment-list',
        empty: ['No experiments searched yet. Run ', 'search(ws, experiment)'],
        render: renderExperiment
      }
    );
  }
}

function renderExperiment(x: IExperimentSummary): HTMLLIElement {
  const item = el('li', `mlw-experiment mlw-status-${x.state}`);
  item.dataset.experiment = x.name;
  item.dataset.state = x.state;
  item.title = [
    `${x.name}: ${x.task ?? '?'} on ${x.target ?? '?'}, ${x.direction ?? ''} ${x.metric ?? ''}`.trim(),
    `${x.trials}${x.budget ? ` of ${x.budget}` : ''} trials: ${x.complete} complete, ${x.pruned} pruned, ${x.failed} failed`,
    x.best_trial === null ? 'no completed trial yet' : `best trial ${x.best_trial}: ${x.metric} ${formatValue(x.best_value)}`,
    x.parent_run_id ? `MLflow parent run ${x.parent_run_id} (${x.state})` : `search ${x.state}`,
    x.report ? `report: ${x.report}` : ''
  ]
    .filter(line => line)
    .join('\n');

  const line1 = el('span', 'mlw-experiment-line');
  const badge = el('span', `mlw-badge mlw-badge-${x.state}`, x.state);
  badge.title = 'state of the search';
  line1.append(nameElement(x.name, 'mlw-experiment-name'), badge);

  const line2 = el('span', 'mlw-experiment-line mlw-experiment-meta');
  line2.append(el('span', 'mlw-experiment-trials', x.trials === 1 ? '1 trial' : `${x.trials} trials`));
  if (x.pruned > 0) {
    line2.append(el('span', 'mlw-experiment-pruned', `${x.pruned} pruned`));
  }
  if (x.failed > 0) {
    line2.append(el('span', 'mlw-experiment-failed', `${x.failed} failed`));
  }
  line2.append(
    el(
      'span',
      'mlw-experiment-best',
      x.best_value === null ? 'no best yet' : `best ${x.metric ?? ''} ${formatValue(x.best_value)}`.replace('  ', ' ')
    )
  );
  item.append(dashboardLink('experiments', { experiment: x.name }, `experiment ${x.name}`, [line1, line2], item.title));
  return item;
}

/** A metric value to four significant digits, as the dashboards show it. */
export function formatValue(v: number | null): string {
  return v === null ? '-' : String(Number(v.toPrecision(4)));
}
