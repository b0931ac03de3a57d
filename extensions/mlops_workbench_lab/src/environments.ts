/**
 * The "Environments" section: every deployment environment of the workspace from `GET /mlops-workbench/environments`:
 * what each endpoint serves (`v3 100%`, `v3 95% · v4 5% (canary)`, `... (shadow)`), the deployment under way with its
 * state, how the last finished one ended, and the gateways running for the environment.
 */
import { ISectionOptions, ListSection, el } from './panel';
import { formatAge } from './features';
import { nameElement } from './datasets';
import { dashboardLink } from './dashboards';

/** The states of a deployment (`mlops_workbench.deploy.deployments.STATES`). */
export type DeploymentState = 'pending' | 'staging' | 'testing' | 'rolling_out' | 'succeeded' | 'failed' | 'rolled_back';

/** One endpoint of an environment's traffic table. */
export interface IEndpointTraffic {
  endpoint: string;
  model: string;
  /** The version answering every request not sent to the candidate; null when the endpoint serves nothing. */
  primary_version: number | null;
  candidate_version: number | null;
  /** 0..1: of requests answered (split) or copied (shadow). */
  candidate_share: number;
  /** `split`: the candidate answers its share; `shadow`: it sees a copy and answers nobody. */
  mode: 'split' | 'shadow';
  /** The library's own wording, e.g. `v1 90%, v2 10%`. */
  traffic: string;
  deployment_id: number | null;
  updated_at: string | null;
}

/** The environment's unfinished deployment. */
export interface IActiveDeployment {
  id: number;
  model: string;
  version: number;
  endpoint: string;
  strategy: string;
  state: DeploymentState;
  started_at: string;
  who: string;
}

/** The environment's newest finished deployment. */
export interface IFinishedDeployment {
  id: number;
  model: string;
  version: number;
  endpoint: string;
  strategy: string;
  outcome: 'succeeded' | 'failed' | 'rolled_back';
  finished_at: string;
  reason: string | null;
}

/** A gateway running for the environment (`mlw serve --env NAME`). */
export interface IEnvironmentGateway {
  pid: number;
  port: number | null;
  started_at: string | null;
  endpoints: Record<string, string>;
}

/** One environment, as `mlops_workbench.ui.deployments.environment_summaries` describes it. */
export interface IEnvironmentSummary {
  name: string;
  /** The registry alias it serves (`staging`, `production`), or null. */
  alias: string | null;
  slo: string;
  description: string;
  endpoints: IEndpointTraffic[];
  active: IActiveDeployment | null;
  last_finished: IFinishedDeployment | null;
  gateways: IEnvironmentGateway[];
}

/** Body of `GET /mlops-workbench/environments`. */
export interface IEnvironmentsResponse {
  workspace: string;
  environments: IEnvironmentSummary[];
}

export class EnvironmentsSection extends ListSection<IEnvironmentsResponse, IEnvironmentSummary> {
  constructor(options: Partial<ISectionOptions> = {}) {
    super(
      { name: 'environments', title: 'Environments', ...options },
      {
        route: 'environments',
        items: b => b.environments,
        listClass: 'mlw-environment-list',
        empty: ['No environments. Define one with ', 'define_environment(ws, name)'],
        render: renderEnvironment
      }
    );
  }
}

/** A share as a percentage to one decimal at most: `90%`, `2.5%`. */
export function percent(share: number): string {
  return `${Number((share * 100).toFixed(1))}%`;
}

/** What an endpoint serves, in short: `v3 100%`, `v3 95% · v4 5% (canary)`, `v3 100% · v4 10% (shadow)`, `nothing`. */
export function trafficText(t: IEndpointTraffic): string {
  if (t.primary_version === null) {
    return 'nothing';
  }
  if (t.candidate_version === null) {
    return `v${t.primary_version} 100%`;
  }
  if (t.mode === 'shadow') {
    return `v${t.primary_version} 100% \u00b7 v${t.candidate_version} ${percent(t.candidate_share)} (shadow)`;
  }
  return `v${t.primary_version} ${percent(1 - t.candidate_share)} \u00b7 v${t.candidate_version} ${percent(t.candidate_share)} (canary)`;
}

function renderEnvironment(e: IEnvironmentSummary): HTMLLIElement {
  const status = e.active ? e.active.state : e.endpoints.length ? 'serving' : 'none';
  const item = el('li', `mlw-environment mlw-status-${status}`);
  item.dataset.environment = e.name;
  item.title = [
    `environment ${e.name}${e.alias ? ` (serves alias ${e.alias})` : ''}: SLO ${e.slo}`,
    e.description,
    e.endpoints.length ? e.endpoints.map(t => `${t.endpoint} (${t.model}): ${t.traffic}`).join('\n') : 'nothing deployed'
  ]
    .filter(line => line)
    .join('\n');

  const line1 = el('span', 'mlw-environment-line');
  line1.append(nameElement(e.name, 'mlw-environment-name'));
  if (e.alias) {
    const alias = el('span', `mlw-badge mlw-alias mlw-alias-${e.alias}`, e.alias);
    alias.dataset.alias = e.alias;
    alias.title = `serves the registry alias ${e.alias}`;
    line1.append(alias);
  }
  item.append(line1);

  if (e.endpoints.length === 0) {
    item.append(el('span', 'mlw-environment-empty', 'nothing deployed'));
  } else {
    const list = el('ul', 'mlw-endpoint-list');
    list.setAttribute('aria-label', `Endpoints of ${e.name}`);
    list.append(...e.endpoints.map(renderEndpoint));
    item.append(list);
  }
  if (e.active) {
    item.append(renderActive(e.active));
  }
  if (e.last_finished) {
    item.append(renderLast(e.last_finished));
  }
  if (e.gateways.length > 0) {
    const gateways = el('span', 'mlw-environment-line mlw-environment-meta mlw-environment-gateways');
    for (const g of e.gateways) {
      const node = el('span', 'mlw-environment-gateway', `gateway ${g.port !== null ? `:${g.port}` : `pid ${g.pid}`}`);
      node.dataset.pid = String(g.pid);
      node.title = `gateway pid ${g.pid}${g.started_at ? `, up since ${g.started_at}` : ''}: ${Object.keys(g.endpoints).join(', ')}`;
      gateways.append(node);
    }
    item.append(gateways);
  }
  return item;
}

function renderEndpoint(t: IEndpointTraffic): HTMLLIElement {
  const item = el('li', `mlw-endpoint mlw-endpoint-${t.candidate_version === null ? 'single' : t.mode}`);
  item.dataset.endpoint = t.endpoint;
  item.dataset.model = t.model;
  item.title = `endpoint ${t.endpoint} serves ${t.model}: ${t.traffic}${t.updated_at ? `\nset ${t.updated_at}` : ''}`;
  item.append(
    el('span', 'mlw-endpoint-name', t.endpoint),
    el('span', 'mlw-endpoint-traffic', trafficText(t))
  );
  if (t.model !== t.endpoint) {
    item.append(el('span', 'mlw-endpoint-model', t.model));
  }
  return item;
}

function renderActive(a: IActiveDeployment): HTMLElement {
  const node = el('span', 'mlw-environment-line mlw-environment-active');
  node.dataset.deployment = String(a.id);
  node.dataset.state = a.state;
  node.title = `deployment ${a.id}: ${a.model} v${a.version} to ${a.endpoint} by ${a.strategy}, ${a.state}; started by ${a.who} at ${a.started_at}`;
  const since = Date.parse(a.started_at);
  const parts: Node[] = [
    el('span', `mlw-badge mlw-badge-${a.state}`, a.state.replace('_', ' ')),
    el('span', 'mlw-environment-deployment', `#${a.id} v${a.version} by ${a.strategy.replace('_', '-')}`),
    el('span', 'mlw-environment-who', Number.isNaN(since) ? a.who : `${a.who}, ${formatAge((Date.now() - since) / 1000)} ago`)
  ];
  node.append(dashboardLink('deployments', { deployment: a.id }, `deployment ${a.id}`, parts, node.title));
  return node;
}

function renderLast(d: IFinishedDeployment): HTMLElement {
  const node = el('span', 'mlw-environment-line mlw-environment-meta mlw-environment-last');
  node.dataset.deployment = String(d.id);
  node.dataset.outcome = d.outcome;
  node.title = `last finished: deployment ${d.id}, ${d.model} v${d.version} by ${d.strategy}, ${d.outcome} at ${d.finished_at}${d.reason ? `\n${d.reason}` : ''}`;
  const parts: Node[] = [
    el('span', 'mlw-environment-last-label', 'last'),
    el('span', 'mlw-environment-deployment', `#${d.id} v${d.version}`),
    el('span', `mlw-environment-outcome mlw-status-${d.outcome}`, d.outcome.replace('_', ' '))
  ];
  node.append(dashboardLink('deployments', { deployment: d.id }, `deployment ${d.id}`, parts, node.title));
  return node;
}
