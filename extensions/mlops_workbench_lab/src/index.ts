/**
 * MLOps Workbench for JupyterLab: a left sidebar over the `mlops-workbench` REST namespace.
 *
 * Activation only builds widgets and registers commands; data loads when the sidebar is
 * first shown or a refresh command runs. The first time JupyterLab opens with the extension (no saved
 * layout has said otherwise), the sidebar is the left panel shown.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { IStateDB } from '@jupyterlab/statedb';
import { refreshIcon } from '@jupyterlab/ui-components';

import { mlwIcon } from './icon';
import { Section, WorkbenchPanel } from './panel';
import { AlertsSection } from './alerts';
import { DatasetsSection } from './datasets';
import { EnvironmentsSection } from './environments';
import { ExperimentsSection } from './experiments';
import { FeaturesSection } from './features';
import { ModelsSection } from './models';
import { MonitorsSection } from './monitors';
import { IRun, IStep, IStepNotebook, RunsSection } from './runs';
import { APIError, requestAPI } from './request';

/** Command ids, all `mlw:<verb>`. */
export namespace CommandIDs {
  export const open = 'mlw:open';
  export const openStepNotebook = 'mlw:open-step-notebook';
  export const refreshRuns = 'mlw:refresh-runs';
  export const refreshDatasets = 'mlw:refresh-datasets';
  export const refreshFeatures = 'mlw:refresh-features';
  export const refreshExperiments = 'mlw:refresh-experiments';
  export const refreshModels = 'mlw:refresh-models';
  export const refreshEnvironments = 'mlw:refresh-environments';
  export const refreshMonitors = 'mlw:refresh-monitors';
  export const refreshAlerts = 'mlw:refresh-alerts';
}

const PALETTE_CATEGORY = 'MLOps Workbench';

/** State key saying the sidebar was shown on a first launch (so later launches keep the layout the user left). */
const FIRST_SHOWN_KEY = '@mlops-workbench/lab:plugin:first-shown';

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@mlops-workbench/lab:plugin',
  description: 'MLOps Workbench sidebar: pipeline runs, datasets, feature views, experiments, models, environments, monitors and open alerts from the mlops-workbench server extension.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette, IStateDB],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null,
    state: IStateDB | null
  ): void => {
    const { commands, shell } = app;

    const panel = new WorkbenchPanel();
    panel.title.icon = mlwIcon;
    // One row per section: the section, its refresh command, and the command's palette text.
    const sections: [Section, string, string, string][] = [
      [new RunsSection({
        onRefresh: () => void commands.execute(CommandIDs.refreshRuns),
        onOpenStep: (run: IRun, step: IStep) => void commands.execute(CommandIDs.openStepNotebook, { run: run.id, step: step.name })
       }), CommandIDs.refreshRuns,
       'Refresh Pipeline Runs', 'Reload the recent pipeline runs in the MLOps Workbench sidebar'],
      [new DatasetsSection({ onRefresh: () => void commands.execute(CommandIDs.refreshDatasets) }), CommandIDs.refreshDatasets,
       'Refresh Datasets', 'Reload the datasets, their validation status and open alerts in the MLOps Workbench sidebar'],
      [new FeaturesSection({ onRefresh: () => void commands.execute(CommandIDs.refreshFeatures) }), CommandIDs.refreshFeatures,
       'Refresh Feature Views', 'Reload the feature views, their builds and materializations in the MLOps Workbench sidebar'],
      [new ExperimentsSection({ onRefresh: () => void commands.execute(CommandIDs.refreshExperiments) }), CommandIDs.refreshExperiments,
       'Refresh Experiments', 'Reload the experiments, their trials and best values in the MLOps Workbench sidebar'],
      [new ModelsSection({ onRefresh: () => void commands.execute(CommandIDs.refreshModels) }), CommandIDs.refreshModels,
       'Refresh Models', 'Reload the registered models, their aliases and validation status in the MLOps Workbench sidebar'],
      [new EnvironmentsSection({ onRefresh: () => void commands.execute(CommandIDs.refreshEnvironments) }), CommandIDs.refreshEnvironments,
       'Refresh Environments', 'Reload what each deployment environment serves and its deployments in the MLOps Workbench sidebar'],
      [new MonitorsSection({ onRefresh: () => void commands.execute(CommandIDs.refreshMonitors) }), CommandIDs.refreshMonitors,
       'Refresh Monitors', 'Reload the model monitors and their last runs in the MLOps Workbench sidebar'],
      [new AlertsSection({ onRefresh: () => void commands.execute(CommandIDs.refreshAlerts) }), CommandIDs.refreshAlerts,
       'Refresh Alerts', 'Reload the open alerts in the MLOps Workbench sidebar']
    ];
    for (const [section, id, label, caption] of sections) {
      panel.addSection(section);
      commands.addCommand(id, { label, caption, icon: refreshIcon, execute: () => section.refresh() });
    }
    commands.addCommand(CommandIDs.open, {
      label: 'Open MLOps Workbench',
      caption: 'Show the MLOps Workbench sidebar',
      icon: mlwIcon,
      execute: () => shell.activateById(panel.id)
    });
    commands.addCommand(CommandIDs.openStepNotebook, {
      label: args => (args.step ? `Open the Executed Notebook of Step ${args.step}` : 'Open a Step\'s Executed Notebook'),
      caption: 'Open the notebook a pipeline step executed (args: run, step)',
      execute: async args => {
        const run = String(args.run ?? '');
        const step = String(args.step ?? '');
        try {
          const query = new URLSearchParams({ run, step }).toString();
          const found = await requestAPI<IStepNotebook>(`notebook?${query}`);
          return await commands.execute('docmanager:open', { path: found.path });
        } catch (error) {
          const message = error instanceof APIError ? `${error.kind}: ${error.message}` : String(error);
          Notification.error(`Cannot open the executed notebook of step ${step} of run ${run}: ${message}`, { autoClose: 15000 });
        }
      }
    });
    if (palette) {
      for (const command of [
        CommandIDs.open,
        CommandIDs.refreshRuns,
        CommandIDs.refreshDatasets,
        CommandIDs.refreshFeatures,
        CommandIDs.refreshExperiments,
        CommandIDs.refreshModels,
        CommandIDs.refreshEnvironments,
        CommandIDs.refreshMonitors,
        CommandIDs.refreshAlerts
      ]) {
        palette.addItem({ command, category: PALETTE_CATEGORY });
      }
    }

    shell.add(panel, 'left', { rank: 900 });
    if (restorer) {
      restorer.add(panel, 'mlops-workbench-sidebar');
    }
    // First launch: show the sidebar. Once shown, the key is kept in the workspace's state, so a later launch restores
    // whatever layout the user left (another panel, or none). `?reset` clears that state: a fresh layout shows it again.
    void app.restored.then(async () => {
      if (state) {
        const shown = await state.fetch(FIRST_SHOWN_KEY).catch(() => undefined);
        if (shown) {
          return;
        }
        await state.save(FIRST_SHOWN_KEY, true).catch(() => undefined);
      }
      shell.activateById(panel.id);
    });
  }
};

export default plugin;
