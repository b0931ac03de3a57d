/**
 * The "Models" section: every registered model of the workspace from `GET /mlops-workbench/models`, with
 * its aliases (candidate, staging, production) and the validation status of each version.
 */
import { ISectionOptions, ListSection, el } from './panel';
import { nameElement } from './datasets';

/** What the validation gates said of a version, or that it was retired (`mlw.validation` / `mlw.archived` tags). */
export type VersionStatus = 'passed' | 'rejected' | 'archived' | 'unvalidated';

/** The aliases a version can hold, in the order a model moves through them. */
export const ALIASES = ['candidate', 'staging', 'production'] as const;

/** One version of a model, as `mlops_workbench.registry.model_versions` describes it (times in ISO 8601). */
export interface IModelVersion {
  version: number;
  status: VersionStatus;
  /** The aliases it holds, candidate first. */
  aliases: string[];
  run_id: string | null;
  owner: string | null;
  /** `6 of 6 gates passed`, `4 of 6 gates passed; failed: ...`. */
  gates: string;
  created_at: string | null;
}

/** One registered model, as `mlops_workbench.ui.models.model_summaries` describes it. */
export interface IModelSummary {
  name: string;
  /** How many versions it has. */
  versions: number;
  latest: number | null;
  /** alias -> the version holding it. */
  aliases: Record<string, number>;
  owner: string | null;
  updated_at: string | null;
  latest_status: VersionStatus | null;
  /** Every version, newest first. */
  version_records: IModelVersion[];
}

/** Body of `GET /mlops-workbench/models`. */
export interface IModelsResponse {
  workspace: string;
  models: IModelSummary[];
}

/** Versions listed under a model; older ones are in the dashboards' Model quality page. */
const SHOWN_VERSIONS = 5;

export class ModelsSection extends ListSection<IModelsResponse, IModelSummary> {
  constructor(options: Partial<ISectionOptions> = {}) {
    super(
      { name: 'models', title: 'Models', ...options },
      {
        route: 'models',
        items: b => b.models,
        listClass: 'mlw-model-list',
        empty: ['No registered models yet. Register one with ', 'register_model(ws, run_id, name, report)'],
        render: renderModel
      }
    );
  }
}

function renderModel(m: IModelSummary): HTMLLIElement {
  const item = el('li', 'mlw-model');
  item.dataset.model = m.name;
  item.title = [
    `${m.name}: ${m.versions} version${m.versions === 1 ? '' : 's'}, latest v${m.latest}${m.owner ? `, owner ${m.owner}` : ''}`,
    Object.keys(m.aliases).length
      ? `aliases: ${Object.entries(m.aliases).map(([a, v]) => `${a} v${v}`).join(', ')}`
      : 'no aliases'
  ].join('\n');

  const line1 = el('span', 'mlw-model-line');
  line1.append(nameElement(m.name, 'mlw-model-name'));
  const aliases = el('span', 'mlw-model-aliases');
  for (const [alias, version] of Object.entries(m.aliases)) {
    aliases.append(aliasBadge(alias, `${alias} v${version}`));
  }
  line1.append(aliases);

  const line2 = el('span', 'mlw-model-line mlw-model-meta');
  line2.append(el('span', 'mlw-model-count', m.versions === 1 ? '1 version' : `${m.versions} versions`));
  if (m.owner) {
    line2.append(el('span', 'mlw-model-owner', `owner ${m.owner}`));
  }

  const versions = el('ul', 'mlw-version-list');
  versions.setAttribute('aria-label', `Versions of ${m.name}`);
  versions.append(...m.version_records.slice(0, SHOWN_VERSIONS).map(renderVersion));
  item.append(line1, line2, versions);
  return item;
}

function renderVersion(v: IModelVersion): HTMLLIElement {
  const item = el('li', `mlw-version mlw-status-${v.status}`);
  item.dataset.version = String(v.version);
  item.dataset.status = v.status;
  item.title = [`v${v.version}: ${v.status}${v.gates ? ` (${v.gates})` : ''}`, v.run_id ? `training run ${v.run_id}` : '', v.created_at ?? '']
    .filter(line => line)
    .join('\n');
  const status = el('span', `mlw-badge mlw-badge-${v.status}`, v.status);
  status.title = v.gates || 'validation status';
  item.append(el('span', 'mlw-version-number', `v${v.version}`), status, ...v.aliases.map(a => aliasBadge(a, a)));
  return item;
}

/** An alias as a badge in its own colour (`mlw-alias-candidate`...). */
function aliasBadge(alias: string, text: string): HTMLElement {
  const badge = el('span', `mlw-badge mlw-alias mlw-alias-${alias}`, text);
  badge.dataset.alias = alias;
  badge.title = `alias ${alias}`;
  return badge;
}
