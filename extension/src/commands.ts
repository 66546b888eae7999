/**
 * The odelab commands, so that the palette, the launcher, the sidebar and tests share one path.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';

import { OdelabModel } from './model';
import { pickObjective } from './format';
import { IItem } from './protocol';
import { openTutorial, saveNewNotebook, systemNotebookTemplate } from './tutorials';
import { odelabIcon } from './icon';

export namespace CommandIDs {
  export const openExplorer = 'odelab:open-explorer';
  export const checkGradient = 'odelab:check-gradient';
  export const newSystemNotebook = 'odelab:new-system-notebook';
  export const openTutorial = 'odelab:open-tutorial';
}

/** The folder new notebooks go to: the file browser's current folder, or the root. */
export type DirectoryGetter = () => string;

function pickItem(
  model: OdelabModel,
  id: unknown,
  accept: (item: IItem) => boolean
): { id: string } | null {
  const items = model.current?.items ?? [];
  if (typeof id === 'string') {
    return items.some(item => item.id === id) ? { id } : null;
  }
  const first = items.find(accept);
  return first ? { id: first.id } : null;
}

export function addCommands(
  app: JupyterFrontEnd,
  model: OdelabModel,
  directory: DirectoryGetter
): void {
  const { commands } = app;

  commands.addCommand(CommandIDs.openExplorer, {
    label: 'Open odelab Explorer',
    caption: 'Open the interactive explorer of an odelab system in a new tab',
    icon: odelabIcon,
    isEnabled: () => (model.current?.items ?? []).some(item => item.kind === 'system'),
    execute: args => {
      const target = pickItem(model, args.id, item => item.kind === 'system');
      if (!target) {
        Notification.warning('odelab: no such system in the current notebook kernel.');
        return;
      }
      model.request('open_explorer', target.id);
    }
  });

  commands.addCommand(CommandIDs.checkGradient, {
    label: 'Check odelab Gradient',
    caption:
      'Check the gradient of the selected odelab objective (or the one used last) and show the report',
    execute: args => {
      const bridge = model.current;
      if (!bridge || !bridge.connected) {
        Notification.warning(
          'odelab: no odelab here: open a notebook and run `import odelab as ol` first.',
          { autoClose: 8000 }
        );
        return;
      }
      const items = bridge.items;
      if (typeof args.id === 'string') {
        const asked = items.find(item => item.id === args.id);
        const id = asked?.kind === 'fit' ? asked.objectiveId : asked?.id;
        if (!asked || !id || (asked.kind !== 'objective' && asked.kind !== 'fit')) {
          Notification.warning(`odelab: ${asked?.name ?? args.id} is not an objective to check.`);
          return;
        }
        bridge.selected = asked.id;
        model.request('check_gradient', id);
        return;
      }
      const id = pickObjective(items, bridge.selected);
      if (id === null) {
        Notification.warning(
          'odelab: no objective to check in this notebook yet: pass a loss to ' +
            'ol.check_gradient, ol.explore or ol.fit first.',
          { autoClose: 8000 }
        );
        return;
      }
      model.request('check_gradient', id);
    }
  });

  commands.addCommand(CommandIDs.newSystemNotebook, {
    label: args => (args.isLauncher ? 'New System' : 'New odelab System Notebook'),
    caption: 'Create a notebook that defines, solves and explores an ODE system',
    icon: odelabIcon,
    execute: async () => {
      const path = await saveNewNotebook(
        app.serviceManager.contents,
        directory(),
        'odelab-system.ipynb',
        systemNotebookTemplate()
      );
      return app.commands.execute('docmanager:open', { path, factory: 'Notebook' });
    }
  });

  commands.addCommand(CommandIDs.openTutorial, {
    label: args => (typeof args.title === 'string' ? args.title : 'Open odelab Tutorial'),
    caption: 'Copy an odelab tutorial into the current folder and open it',
    icon: odelabIcon,
    execute: async args => {
      if (typeof args.file !== 'string') {
        return;
      }
      try {
        return await openTutorial(app, args.file, directory());
      } catch (error) {
        Notification.error(String(error));
      }
    }
  });
}
