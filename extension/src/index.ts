/**
 * odelab for JupyterLab: one plugin per feature, all fed by one model of the notebook kernels.
 */
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Token } from '@lumino/coreutils';

import { addCommands, CommandIDs } from './commands';
import { DisplayTabs } from './explorer';
import { odelabIcon } from './icon';
import { OdelabModel } from './model';
import { settingsRequest } from './protocol';
import { OdelabSidebar } from './sidebar';
import { OdelabStatus } from './statusbar';
import { listTutorials } from './tutorials';

export const IOdelabModel = new Token<OdelabModel>(
  'odelab:IOdelabModel',
  'The odelab connection to notebook kernels.'
);

const LAUNCHER_CATEGORY = 'odelab';

/** The kernel model, the explorer tabs and the solver settings. */
const core: JupyterFrontEndPlugin<OdelabModel> = {
  id: 'odelab:plugin',
  description: 'Connects to odelab in notebook kernels and applies the solver settings.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ISettingRegistry],
  provides: IOdelabModel,
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    settings: ISettingRegistry | null
  ): OdelabModel => {
    const model = new OdelabModel(tracker);
    const tabs = new DisplayTabs(app);
    model.actionStarted.connect((_, action) => tabs.started(action));
    model.displayRequested.connect((_, request) => tabs.show(request));
    model.errorReceived.connect((_, error) => {
      if (!tabs.fail(error.seq, error.message)) {
        Notification.error(`odelab: ${error.message}`);
      }
    });
    if (settings) {
      settings
        .load(core.id)
        .then(loaded => {
          // Only what the user set: unset values keep the library defaults in the kernel.
          const apply = () => model.applySettings(settingsRequest(loaded.user as any));
          loaded.changed.connect(apply);
          apply();
        })
        .catch(reason => console.error('odelab: failed to load settings', reason));
    }
    return model;
  }
};

const sidebar: JupyterFrontEndPlugin<void> = {
  id: 'odelab:sidebar',
  description: 'Lists the live odelab systems of the current notebook.',
  autoStart: true,
  requires: [IOdelabModel],
  optional: [ILayoutRestorer, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    model: OdelabModel,
    restorer: ILayoutRestorer | null
  ): void => {
    const panel = new OdelabSidebar(model, {
      openExplorer: id => app.commands.execute(CommandIDs.openExplorer, { id }),
      checkGradient: id => app.commands.execute(CommandIDs.checkGradient, { id })
    });
    panel.id = 'odelab-sidebar';
    panel.title.icon = odelabIcon;
    app.shell.add(panel, 'left', { rank: 850 });
    restorer?.add(panel, panel.id);
  }
};

const statusbar: JupyterFrontEndPlugin<void> = {
  id: 'odelab:statusbar',
  description: 'Shows the JAX backend, devices, float64 and compilation in the status bar.',
  autoStart: true,
  requires: [IOdelabModel, IStatusBar],
  activate: (_: JupyterFrontEnd, model: OdelabModel, bar: IStatusBar): void => {
    const item = new OdelabStatus(model);
    bar.registerStatusItem('odelab:status', {
      item,
      align: 'left',
      rank: 5,
      isActive: () => item.isActive,
      activeStateChanged: model.changed
    });
  }
};

const commands: JupyterFrontEndPlugin<void> = {
  id: 'odelab:commands',
  description: 'odelab commands: new system notebook, open explorer, check gradient.',
  autoStart: true,
  requires: [IOdelabModel],
  optional: [ICommandPalette, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    model: OdelabModel,
    palette: ICommandPalette | null,
    browser: IDefaultFileBrowser | null
  ): void => {
    addCommands(app, model, () => browser?.model.path ?? '');
    for (const command of [
      CommandIDs.newSystemNotebook,
      CommandIDs.openExplorer,
      CommandIDs.checkGradient
    ]) {
      palette?.addItem({ command, category: 'odelab' });
    }
  }
};

const launcher: JupyterFrontEndPlugin<void> = {
  id: 'odelab:launcher',
  description: 'An "odelab" launcher section: a new system notebook and the tutorials.',
  autoStart: true,
  requires: [IOdelabModel, ILauncher],
  activate: (_: JupyterFrontEnd, __: OdelabModel, launcher: ILauncher): void => {
    launcher.add({
      command: CommandIDs.newSystemNotebook,
      category: LAUNCHER_CATEGORY,
      rank: 0,
      args: { isLauncher: true }
    });
    listTutorials()
      .then(tutorials =>
        tutorials.forEach((tutorial, rank) =>
          launcher.add({
            command: CommandIDs.openTutorial,
            category: LAUNCHER_CATEGORY,
            rank: rank + 1,
            args: { file: tutorial.file, title: tutorial.title }
          })
        )
      )
      .catch(reason => console.warn('odelab: no tutorials listed', reason));
  }
};

export default [core, sidebar, statusbar, commands, launcher];
