/**
 * MLOps Workbench for JupyterLab: a left sidebar over the `mlops-workbench` REST namespace.
 *
 * Activation only builds widgets and registers commands; data loads when the sidebar is
 * first shown or a refresh command runs.
 */
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
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
import { RunsSection } from './runs';

/** Command ids, all `mlw:<verb>`. */
export namespace CommandIDs {
  export const open = 'mlw:open';
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

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@mlops-workbench/lab:plugin',
  description: 'MLOps Workbench sidebar: pipeline runs, datasets, feature views, experiments, models, environments, monitors and open alerts from the mlops-workbench server extension.',
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null, palette: ICommandPalette | null): void => {
    const { commands, shell } = app;

    const panel = new WorkbenchPanel();
    panel.title.icon = mlwIcon;
    // One row per section: the section, its refresh command, and the command's palette text.
    const sections: [Section, string, string, string][] = [
      [new RunsSection({ onRefresh: () => void commands.execute(CommandIDs.refreshRuns) }), CommandIDs.refreshRuns,
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
  }
};

export default plugin;
