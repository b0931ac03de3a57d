/**
 * Links from the sidebar's items to their dashboard pages (`mlw dashboards`): a dataset to its Data quality page, a
 * feature view to Features, an experiment to Experiments, a model (version) to Model quality, a deployment to
 * Deployments, a monitor to Monitoring.
 *
 * Each item is a real link (`<a href target="_blank">`): Enter opens it, a middle click or the browser's menu works as
 * on any link. A plain click first asks the server whether the dashboards answer (`GET /mlops-workbench/dashboards`):
 * if they do, the page opens in a new tab; if not, a notification says how to start them, with an "Open anyway".
 */
import { Notification } from '@jupyterlab/apputils';

import { requestAPI } from './request';

/** Body of `GET /mlops-workbench/dashboards`. */
export interface IDashboardsResponse {
  /** Where the browser finds the dashboards (`MLWLab.dashboards_url`), without a trailing slash. */
  url: string;
  /** Whether something answers there now. */
  running: boolean;
}

/** Slug of each dashboard page, as `mlops_workbench.ui.shell.STAGES` names them, and its title. */
export const PAGES = {
  'data-quality': 'Data quality',
  features: 'Features',
  experiments: 'Experiments',
  'model-quality': 'Model quality',
  deployments: 'Deployments',
  monitoring: 'Monitoring',
  pipelines: 'Pipelines'
} as const;

export type Page = keyof typeof PAGES;

const DEFAULT_URL = 'http://127.0.0.1:5006';

/** The dashboards' location, fetched once with the first section that shows a link. */
class Dashboards {
  /** The dashboards' base URL; the default until the server said otherwise. */
  get url(): string {
    return this._url;
  }

  /** Fetch the configured URL once (every section awaits it before rendering its links). */
  ready(): Promise<void> {
    if (!this._ready) {
      this._ready = requestAPI<IDashboardsResponse>('dashboards')
        .then(body => {
          this._url = body.url;
        })
        .catch(() => {
          this._ready = null; // asked again on the next refresh; the links use the default meanwhile
        });
    }
    return this._ready ?? Promise.resolve();
  }

  /** The URL of `page` showing what `query` selects, e.g. `page('data-quality', {dataset: 'loans'})`. */
  href(page: Page, query: Record<string, string | number>): string {
    const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
    return `${this._url}/${page}?${params.toString()}`;
  }

  /** Open `href` in a new tab if the dashboards answer, else say how to start them. */
  async open(href: string, what: string): Promise<void> {
    let running = true;
    try {
      const body = await requestAPI<IDashboardsResponse>('dashboards');
      this._url = body.url;
      running = body.running;
    } catch {
      running = true; // the server cannot tell: let the browser try
    }
    if (running) {
      window.open(href, '_blank', 'noopener');
      return;
    }
    // Short: JupyterLab cuts a notification's text at 140 characters.
    Notification.warning(
      `The dashboards are not running at ${this._url}: start them with \`mlw dashboards\`, then click ${what} again.`,
      {
        autoClose: 15000,
        actions: [{ label: 'Open anyway', caption: href, callback: () => window.open(href, '_blank', 'noopener') }]
      }
    );
  }

  private _url = DEFAULT_URL;
  private _ready: Promise<void> | null = null;
}

/** The one instance the sections share. */
export const dashboards = new Dashboards();

/**
 * A link to `page` selecting `query`, holding `children` (the item's visible lines), labelled `label` for screen
 * readers, e.g. `Open dataset loans in the Data quality dashboard`; its tooltip is `tooltip` (the item's own) and
 * where the link goes.
 */
export function dashboardLink(
  page: Page,
  query: Record<string, string | number>,
  what: string,
  children: Node[],
  tooltip = ''
): HTMLAnchorElement {
  const href = dashboards.href(page, query);
  const link = document.createElement('a');
  link.className = 'mlw-item-link';
  link.href = href;
  link.target = '_blank';
  link.rel = 'noopener';
  link.dataset.page = page;
  link.setAttribute('aria-label', `Open ${what} in the ${PAGES[page]} dashboard`);
  link.title = `${tooltip ? `${tooltip}\n\n` : ''}Click: open ${what} in the ${PAGES[page]} dashboard (${href}; \`mlw dashboards\` serves them)`;
  link.append(...children);
  link.addEventListener('click', event => {
    if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) {
      return; // the browser's own handling: a new tab, a new window...
    }
    event.preventDefault();
    void dashboards.open(href, what);
  });
  return link;
}
