/**
 * The "Models" section: every registered model of the workspace from `GET /mlops-workbench/models`, with
 * its aliases (candidate, staging, production) and the validation status of each version, and what running
 * gateways serve of it from `GET /mlops-workbench/served` (endpoint, model reference, version, port).
 */
import { APIError, requestAPI } from './request';
import { ISectionOptions, ListSection, el } from './panel';
import { nameElement } from './datasets';
import { dashboardLink } from './dashboards';

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

/** One endpoint of a running gateway, as `mlops_workbench.ui.serving.served_models` describes it. */
export interface IServedEndpoint {
  endpoint: string;
  /** What the gateway was told to serve: `name@alias` or `name/version`. */
  ref: string;
  model: string | null;
  alias: string | null;
  /** The version the reference resolves to now (the gateway follows a moved alias); null when it does not resolve. */
  version: number | null;
  port: number | null;
  pid: number;
  started_at: string | null;
  /** Why the reference does not resolve, else null. */
  problem: string | null;
}

/** Body of `GET /mlops-workbench/served`. */
export interface IServedResponse {
  workspace: string;
  served: IServedEndpoint[];
}

/** What is served, fetched with the models; `error` when the serving status could not be read. */
interface IServing {
  endpoints: IServedEndpoint[];
  error: string | null;
}

/** Versions listed under a model; older ones are in the dashboards' Model quality page. */
const SHOWN_VERSIONS = 5;

export class ModelsSection extends ListSection<IModelsResponse, IModelSummary> {
  constructor(options: Partial<ISectionOptions> = {}) {
    const serving: IServing = { endpoints: [], error: null };
    super(
      { name: 'models', title: 'Models', ...options },
      {
        route: 'models',
        items: b => b.models,
        listClass: 'mlw-model-list',
        empty: ['No registered models yet. Register one with ', 'register_model(ws, run_id, name, report)'],
        render: m => renderModel(m, serving),
        before: () => loadServing(serving)
      }
    );
    this.serving = serving;
  }

  /** The endpoints of the running gateways, as last loaded. */
  get served(): readonly IServedEndpoint[] {
    return this.serving.endpoints;
  }

  private readonly serving: IServing;
}

/** Fetch what is served into `serving`; a failure is kept as a message, so the models still show. */
async function loadServing(serving: IServing): Promise<void> {
  try {
    serving.endpoints = (await requestAPI<IServedResponse>('served')).served;
    serving.error = null;
  } catch (error) {
    serving.endpoints = [];
    serving.error = error instanceof APIError ? `${error.kind}: ${error.message}` : String(error);
  }
}

function renderModel(m: IModelSummary, serving: IServing): HTMLLIElement {
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
  const served = serving.endpoints.filter(s => s.model === m.name);
  const servedVersions = new Set(served.map(s => s.version));
  versions.append(...m.version_records.slice(0, SHOWN_VERSIONS).map(v => renderVersion(m.name, v, servedVersions.has(v.version))));
  item.append(dashboardLink('model-quality', { model: m.name }, `model ${m.name}`, [line1, line2], item.title), versions);
  if (served.length > 0) {
    const list = el('ul', 'mlw-served-list');
    list.setAttribute('aria-label', `Served endpoints of ${m.name}`);
    list.append(...served.map(renderServed));
    item.append(list);
  } else if (serving.error !== null) {
    item.append(el('span', 'mlw-served-error', `serving status unknown (${serving.error})`));
  }
  return item;
}

/**
 * One endpoint serving the model, on two lines to fit the sidebar: `serving`, the endpoint and its port; then the
 * reference after the model's name (`@candidate`, `/3`) and the version it answers with now.
 */
function renderServed(s: IServedEndpoint): HTMLLIElement {
  const item = el('li', `mlw-served${s.problem ? ' mlw-mod-problem' : ''}`);
  item.dataset.endpoint = s.endpoint;
  item.dataset.ref = s.ref;
  item.dataset.port = String(s.port ?? '');
  item.dataset.version = String(s.version ?? '');
  item.title = [
    `endpoint ${s.endpoint} serves ${s.ref}${s.version !== null ? ` (v${s.version} now)` : ''} on port ${s.port ?? '?'}`,
    `gateway pid ${s.pid}${s.started_at ? `, up since ${s.started_at}` : ''}`,
    s.problem ?? ''
  ]
    .filter(line => line)
    .join('\n');
  const line1 = el('span', 'mlw-served-line');
  line1.append(
    el('span', `mlw-badge mlw-badge-${s.problem ? 'rejected' : 'serving'}`, s.problem ? 'broken' : 'serving'),
    el('span', 'mlw-served-endpoint', s.endpoint),
    el('span', 'mlw-served-port', s.port !== null ? `:${s.port}` : '')
  );
  const line2 = el('span', 'mlw-served-line mlw-served-meta');
  const short = s.model !== null && s.ref.startsWith(s.model) ? s.ref.slice(s.model.length) : s.ref;
  line2.append(
    el('span', 'mlw-served-ref', short),
    el('span', 'mlw-served-arrow', '\u2192'),
    el('span', 'mlw-served-version', s.version !== null ? `v${s.version}` : 'unresolved')
  );
  item.append(line1, line2);
  return item;
}

function renderVersion(model: string, v: IModelVersion, served = false): HTMLLIElement {
  const item = el('li', `mlw-version mlw-status-${v.status}`);
  item.dataset.version = String(v.version);
  item.dataset.status = v.status;
  item.title = [`v${v.version}: ${v.status}${v.gates ? ` (${v.gates})` : ''}`, v.run_id ? `training run ${v.run_id}` : '', v.created_at ?? '']
    .filter(line => line)
    .join('\n');
  const status = el('span', `mlw-badge mlw-badge-${v.status}`, v.status);
  status.title = v.gates || 'validation status';
  const parts: Node[] = [el('span', 'mlw-version-number', `v${v.version}`), status, ...v.aliases.map(a => aliasBadge(a, a))];
  if (served) {
    item.dataset.served = 'true';
    const mark = el('span', 'mlw-version-served', '\u25cf');
    mark.title = 'served: a running gateway answers with this version';
    mark.setAttribute('aria-label', 'served');
    parts.push(mark);
  }
  item.append(dashboardLink('model-quality', { model, version: v.version }, `version ${v.version} of model ${model}`, parts, item.title));
  return item;
}

/** An alias as a badge in its own colour (`mlw-alias-candidate`...). */
function aliasBadge(alias: string, text: string): HTMLElement {
  const badge = el('span', `mlw-badge mlw-alias mlw-alias-${alias}`, text);
  badge.dataset.alias = alias;
  badge.title = `alias ${alias}`;
  return badge;
}
