/**
 * The "MLOps Workbench" sidebar: a stack of sections (pipeline runs, datasets, feature views, experiments,
 * models, environments and alerts), each loading its own data when the sidebar is first shown.
 */
import { refreshIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Panel, Widget } from '@lumino/widgets';

import { APIError, requestAPI } from './request';
import { dashboards } from './dashboards';

/** What the panel needs from a section. */
export interface ISectionOptions {
  /** Short machine name, used in element ids and `data-section`, e.g. `runs`. */
  name: string;
  /** Heading shown to the user, e.g. `Pipeline runs`. */
  title: string;
  /** Run when the section's refresh button is clicked (normally a `mlw:refresh-*` command). */
  onRefresh?: () => void;
}

/**
 * One titled block of the sidebar with a refresh button, a body and an error box.
 *
 * Subclasses implement `load()`: fetch with `requestAPI` and render into `this.body`.
 * `refresh()` wraps it: a busy state, one load at a time, and any failure shown in the
 * error box with the server's message.
 */
export abstract class Section extends Widget {
  constructor(options: ISectionOptions) {
    super({ node: document.createElement('section') });
    this.name = options.name;
    this.addClass('mlw-section');
    this.node.dataset.section = options.name;
    this.id = `mlw-section-${options.name}`;
    this.title.label = options.title;

    const header = el('header', 'mlw-section-header');
    const heading = el('h3', 'mlw-section-title', options.title);
    heading.id = `${this.id}-title`;
    this.node.setAttribute('aria-labelledby', heading.id);
    this.refreshButton = el('button', 'mlw-refresh jp-Button jp-mod-minimal');
    this.refreshButton.type = 'button';
    this.refreshButton.title = `Refresh ${options.title.toLowerCase()}`;
    this.refreshButton.setAttribute('aria-label', this.refreshButton.title);
    this.refreshButton.append(refreshIcon.element({ tag: 'span', className: 'mlw-refresh-icon' }));
    const onRefresh = options.onRefresh ?? (() => void this.refresh());
    this.refreshButton.addEventListener('click', onRefresh);
    header.append(heading, this.refreshButton);

    this.errorBox = el('div', 'mlw-error');
    this.errorBox.setAttribute('role', 'alert');
    this.errorBox.hidden = true;
    this.body = el('div', 'mlw-section-body');
    this.node.append(header, this.errorBox, this.body);
  }

  /** Short machine name of the section (`runs`, `datasets`...). */
  readonly name: string;

  /** Whether a load has completed at least once (successfully or not). */
  get loaded(): boolean {
    return this._loaded;
  }

  /** Reload the section; concurrent calls share the load in flight. */
  refresh(): Promise<void> {
    if (!this._pending) {
      this._pending = this._run().finally(() => {
        this._pending = null;
      });
    }
    return this._pending;
  }

  /** Fetch this section's data and render it into `this.body`. */
  protected abstract load(): Promise<void>;

  protected readonly body: HTMLElement;

  private async _run(): Promise<void> {
    this.node.setAttribute('aria-busy', 'true');
    this.addClass('mlw-mod-loading');
    this.refreshButton.disabled = true;
    try {
      await this.load();
      this.errorBox.hidden = true;
      this.errorBox.replaceChildren();
      this.removeClass('mlw-mod-stale');
    } catch (error) {
      this.showError(error);
      this.addClass('mlw-mod-stale'); // whatever the body still shows is from an earlier load
    } finally {
      this._loaded = true;
      this.node.setAttribute('aria-busy', 'false');
      this.removeClass('mlw-mod-loading');
      this.refreshButton.disabled = false;
    }
  }

  private showError(error: unknown): void {
    const kind = error instanceof APIError ? error.kind : 'Error';
    const status = error instanceof APIError && error.status > 0 ? ` (HTTP ${error.status})` : '';
    const message = error instanceof Error ? error.message : String(error);
    this.errorBox.replaceChildren(
      el('strong', 'mlw-error-kind', `${kind}${status}`),
      el('span', 'mlw-error-message', message)
    );
    this.errorBox.hidden = false;
  }

  private readonly refreshButton: HTMLButtonElement;
  private readonly errorBox: HTMLElement;
  private _pending: Promise<void> | null = null;
  private _loaded = false;
}

/** What a list section needs besides its name and title. */
export interface IListOptions<R, T> {
  /** Route under `/mlops-workbench/`, e.g. `datasets`. */
  route: string;
  /** The items in the response body. */
  items: (body: R) => T[];
  /** Class of the `<ul>`, e.g. `mlw-dataset-list`. */
  listClass: string;
  /** What to say when there are none: the text, then the call or command that makes one (if any). */
  empty: [text: string, code?: string];
  /** One item as a list element. */
  render: (item: T) => HTMLLIElement;
  /** Fetched alongside the route, before the items are rendered (what the renderer also needs, e.g. what is served). */
  before?: () => Promise<void>;
}

/**
 * A section that shows one REST answer as a list, or a hint when it is empty; the list is labelled by the
 * section's title. Datasets, feature views, experiments and models are all this with their own item renderer.
 */
export class ListSection<R, T> extends Section {
  constructor(options: ISectionOptions, list: IListOptions<R, T>) {
    super(options);
    this.list = list;
    this.listLabel = options.title;
  }

  /** The items last shown (empty before the first load). */
  get items(): readonly T[] {
    return this._items;
  }

  protected async load(): Promise<void> {
    const { route, items, listClass, empty, render, before } = this.list;
    // The dashboards' URL too: the items link to their pages there.
    const [body] = await Promise.all([requestAPI<R>(route), before?.(), dashboards.ready()]);
    this._items = items(body);
    if (this._items.length === 0) {
      const hint = el('p', 'mlw-empty', empty[0]);
      if (empty[1] !== undefined) {
        hint.append(el('code', '', empty[1]), '.');
      }
      this.body.replaceChildren(hint);
      return;
    }
    const ul = el('ul', listClass);
    ul.setAttribute('aria-label', this.listLabel);
    ul.append(...this._items.map(render));
    this.body.replaceChildren(ul);
  }

  private readonly list: IListOptions<R, T>;
  private readonly listLabel: string;
  private _items: T[] = [];
}

/**
 * The sidebar widget. Activation only builds it; each section loads the first time the
 * panel is shown, so starting JupyterLab never waits on the REST handlers.
 */
export class WorkbenchPanel extends Panel {
  constructor() {
    super();
    this.id = 'mlw-sidebar';
    this.addClass('mlw-panel');
    this.title.caption = 'MLOps Workbench';
    const header = new Widget({ node: el('div', 'mlw-panel-header') });
    header.node.append(el('h2', 'mlw-panel-title', 'MLOps Workbench'));
    this.addWidget(header);
  }

  /** Append a section; it loads now if the panel is already visible. */
  addSection(section: Section): void {
    this.addWidget(section);
    if (this.isVisible && !section.loaded) {
      void section.refresh();
    }
  }

  /** The section with this name, if any. */
  section(name: string): Section | undefined {
    return this.widgets.find((w): w is Section => w instanceof Section && w.name === name);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    for (const widget of this.widgets) {
      if (widget instanceof Section && !widget.loaded) {
        void widget.refresh();
      }
    }
  }
}

/** Create an element with a class name and optional text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}
