/**
 * The "Pipeline runs" section: recent runs from `GET /mlops-workbench/runs`, newest first;
 * clicking a run shows its steps, clicking a step opens its executed notebook.
 */
import { requestAPI } from './request';
import { ISectionOptions, Section, el } from './panel';

export type RunStatus = 'running' | 'succeeded' | 'failed' | 'killed';
export type StepStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'timed_out' | 'killed';

/** Why a run or step did not succeed, as the runner records it. */
export interface IRunError {
  /** Exception or reason name, e.g. `ZeroDivisionError`, `StepTimeout`, `Skipped`. */
  type: string;
  message: string;
  /** Index of the failing cell in the executed notebook, when known. */
  cell_index?: number | null;
  [key: string]: unknown;
}

/** One step of a run, as `RunRecord.to_dict()` sends it. */
export interface IStep {
  name: string;
  status: StepStatus;
  attempts: number;
  started_at: string | null;
  ended_at: string | null;
  duration_s: number | null;
  outputs: Record<string, unknown> | null;
  error: IRunError | null;
  /** Absolute path of the executed notebook. */
  notebook: string | null;
  parameters: Record<string, unknown>;
}

/** One pipeline run, as `RunRecord.to_dict()` sends it. */
export interface IRun {
  id: string;
  pipeline: string;
  status: RunStatus;
  parameters: Record<string, unknown>;
  started_at: string | null;
  ended_at: string | null;
  duration_s: number | null;
  error: IRunError | null;
  steps: IStep[];
  /** Folder holding the run's executed notebooks. */
  folder: string;
}

/** Body of `GET /mlops-workbench/runs`. */
export interface IRunsResponse {
  workspace: string;
  runs: IRun[];
}

/** Body of `GET /mlops-workbench/notebook?run=ID&step=NAME`. */
export interface IStepNotebook {
  /** Path JupyterLab opens it by, relative to its root. */
  path: string;
  /** Whether `path` is a read-only copy (the workspace lies outside JupyterLab's root). */
  copied: boolean;
  /** The executed notebook itself (absolute). */
  notebook: string;
}

export class RunsSection extends Section {
  constructor(
    options: Partial<ISectionOptions> & {
      limit?: number;
      /** Run when a step is clicked (normally the `mlw:open-step-notebook` command). */
      onOpenStep?: (run: IRun, step: IStep) => void;
    } = {}
  ) {
    super({ name: 'runs', title: 'Pipeline runs', ...options });
    this.limit = options.limit ?? 20;
    this.onOpenStep = options.onOpenStep ?? null;
  }

  /** The runs last shown (empty before the first load). */
  get runs(): readonly IRun[] {
    return this._runs;
  }

  protected async load(): Promise<void> {
    const data = await requestAPI<IRunsResponse>(`runs?limit=${this.limit}`);
    this._runs = data.runs;
    this.render(data);
  }

  private render(data: IRunsResponse): void {
    // Right-to-left so a long path is cut at its start; <bdi> keeps the path itself left-to-right.
    const workspace = el('p', 'mlw-workspace');
    workspace.dir = 'rtl';
    workspace.title = `Workspace: ${data.workspace}`;
    workspace.append(el('bdi', '', data.workspace));
    if (data.runs.length === 0) {
      const empty = el('p', 'mlw-empty', 'No pipeline runs yet. Start one with ');
      empty.append(el('code', '', 'mlw run NAME'), '.');
      this.body.replaceChildren(workspace, empty);
      return;
    }
    const list = el('ul', 'mlw-run-list');
    list.setAttribute('aria-label', 'Pipeline runs');
    list.append(...data.runs.map(run => this.renderRun(run)));
    this.body.replaceChildren(workspace, list);
  }

  private renderRun(run: IRun): HTMLLIElement {
    const item = el('li', `mlw-run mlw-status-${run.status}`);
    item.dataset.runId = run.id;
    item.dataset.status = run.status;

    const summary = el('button', 'mlw-run-summary');
    summary.type = 'button';
    summary.title = [`run ${run.id}`, ...Object.entries(run.parameters).map(([k, v]) => `${k} = ${JSON.stringify(v)}`)].join(
      '\n'
    );
    const line1 = el('span', 'mlw-run-line');
    line1.append(el('span', 'mlw-run-pipeline', run.pipeline), badge(run.status));
    const line2 = el('span', 'mlw-run-line mlw-run-meta');
    line2.append(
      el('span', 'mlw-run-id', shortId(run.id)),
      el('span', 'mlw-run-duration', formatDuration(run.duration_s, run.status === 'running')),
      timeElement('mlw-run-started', run.started_at)
    );
    summary.append(line1, line2);

    const details = el('div', 'mlw-run-details');
    details.id = `mlw-run-${run.id}-details`;
    if (run.error) {
      details.append(el('p', 'mlw-run-error', errorLine(run.error)));
    }
    const steps = el('ol', 'mlw-step-list');
    steps.append(...run.steps.map(step => this.renderStep(run, step)));
    details.append(steps);

    const expanded = this.expanded.has(run.id);
    details.hidden = !expanded;
    summary.setAttribute('aria-expanded', String(expanded));
    summary.setAttribute('aria-controls', details.id);
    summary.addEventListener('click', () => {
      const open = details.hidden;
      details.hidden = !open;
      summary.setAttribute('aria-expanded', String(open));
      item.classList.toggle('mlw-mod-expanded', open);
      if (open) {
        this.expanded.add(run.id);
      } else {
        this.expanded.delete(run.id);
      }
    });
    item.classList.toggle('mlw-mod-expanded', expanded);
    item.append(summary, details);
    return item;
  }

  private renderStep(run: IRun, step: IStep): HTMLLIElement {
    const item = renderStep(step);
    if (step.notebook && this.onOpenStep) {
      // The step's line becomes a button: a click or Enter opens the executed notebook.
      const open = this.onOpenStep;
      const line = item.querySelector('.mlw-step-line') as HTMLElement;
      const button = el('button', 'mlw-step-line mlw-step-open');
      button.type = 'button';
      button.append(...Array.from(line.childNodes));
      const name = step.notebook.slice(step.notebook.lastIndexOf('/') + 1);
      button.setAttribute('aria-label', `Open the executed notebook of step ${step.name} (${name})`);
      button.title = `Open the executed notebook ${name}\n${step.notebook}`;
      button.addEventListener('click', () => open(run, step));
      line.replaceWith(button);
    }
    return item;
  }

  private readonly onOpenStep: ((run: IRun, step: IStep) => void) | null;
  private readonly limit: number;
  /** Run ids the user expanded, kept across refreshes. */
  private readonly expanded = new Set<string>();
  private _runs: IRun[] = [];
}

function renderStep(step: IStep): HTMLLIElement {
  const item = el('li', `mlw-step mlw-status-${step.status}`);
  item.dataset.step = step.name;
  item.dataset.status = step.status;
  const line = el('span', 'mlw-step-line');
  line.append(
    el('span', 'mlw-step-name', step.name),
    badge(step.status),
    el('span', 'mlw-step-duration', formatDuration(step.duration_s, step.status === 'running'))
  );
  item.append(line);
  if (step.attempts > 1) {
    item.append(el('span', 'mlw-step-attempts', `${step.attempts} attempts`));
  }
  if (step.error) {
    const error = el('p', 'mlw-step-error', errorLine(step.error));
    if (step.notebook) {
      error.title = `Executed notebook: ${step.notebook}`;
    }
    item.append(error);
  }
  return item;
}

/** `ZeroDivisionError in cell 2: division by zero`, as the library's `describe_failure` words it. */
export function errorLine(error: IRunError): string {
  const where = typeof error.cell_index === 'number' ? ` in cell ${error.cell_index}` : '';
  return `${error.type || 'Error'}${where}: ${error.message ?? ''}`;
}

function badge(status: RunStatus | StepStatus): HTMLSpanElement {
  return el('span', `mlw-badge mlw-badge-${status}`, status.replace('_', ' '));
}

/**
 * The distinctive part of a run id: runner ids are `YYYYMMDD-HHMMSS-<hex>` and the time is
 * shown beside it, so keep the random tail (the full id is in the tooltip).
 */
export function shortId(id: string): string {
  const tail = id.slice(id.lastIndexOf('-') + 1);
  return tail.length >= 4 ? tail : id.slice(0, 8);
}

/** `0.4 s`, `12 s`, `3 m 05 s`, `1 h 02 m`; an em dash when unknown. */
export function formatDuration(seconds: number | null, running = false): string {
  if (seconds === null || !Number.isFinite(seconds)) {
    return running ? 'running' : '\u2014';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  const s = Math.round(seconds);
  if (s < 60) {
    return `${s} s`;
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) {
    return `${Math.floor(s / 60)} m ${pad(s % 60)} s`;
  }
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} m`;
}

function timeElement(className: string, iso: string | null): HTMLElement {
  const node = el('time', className);
  if (!iso) {
    node.textContent = '\u2014';
    return node;
  }
  const date = new Date(iso);
  node.dateTime = iso;
  node.title = iso;
  node.textContent = Number.isNaN(date.getTime())
    ? iso
    : date.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return node;
}
