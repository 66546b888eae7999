/**
 * Main-area tabs that show what the kernel sends for an item (the explorer, a gradient report).
 *
 * The kernel replies with display_data outputs, exactly what a cell would show; they are rendered
 * with the notebook's own rendermime registry, whose renderers (Panel/Bokeh, ipywidgets) are bound
 * to that notebook's kernel, so interactive views keep talking to Python.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import * as nbformat from '@jupyterlab/nbformat';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';

import { IDisplayRequest } from './model';

export class DisplayTabs {
  constructor(private readonly _app: JupyterFrontEnd) {}

  /** Show the outputs in the tab for this item and title, reusing the tab if it is open. */
  show(request: IDisplayRequest): MainAreaWidget<OutputArea> {
    const key = `${request.id}:${request.title}`;
    let tab = this._tabs.get(key);
    if (!tab || tab.isDisposed) {
      // Outputs come from the user's own kernel in answer to the user's click, as a cell's do.
      const model = new OutputAreaModel({ trusted: true });
      const area = new OutputArea({ model, rendermime: request.rendermime });
      area.addClass('jp-odelab-display');
      tab = new MainAreaWidget({ content: area });
      tab.id = `odelab-display-${this._counter++}`;
      tab.title.label = request.title;
      tab.title.closable = true;
      tab.addClass('jp-odelab-display-tab');
      tab.node.dataset.itemId = request.id;
      this._tabs.set(key, tab);
      this._app.shell.add(tab, 'main');
    }
    tab.content.model.clear();
    tab.content.model.fromJSON(request.outputs as nbformat.IOutput[]);
    this._app.shell.activateById(tab.id);
    return tab;
  }

  private _tabs = new Map<string, MainAreaWidget<OutputArea>>();
  private _counter = 0;
}
