/**
 * Main-area tabs that show what the kernel sends for an item (the explorer, a gradient report).
 *
 * The kernel replies with display_data outputs, exactly what a cell would show; they are rendered
 * with the notebook's own rendermime registry, whose renderers (Panel/Bokeh, ipywidgets) are bound
 * to that notebook's kernel, so interactive views keep talking to Python. A tab opens at once with
 * a "working" note, since building a view can take a while in the kernel.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import * as nbformat from '@jupyterlab/nbformat';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { IActionStarted, IDisplayRequest } from './model';
import { ItemAction } from './protocol';

type Tab = MainAreaWidget<OutputArea>;

function note(text: string): nbformat.IOutput {
  return { output_type: 'display_data', data: { 'text/plain': text }, metadata: {} };
}

export class DisplayTabs {
  constructor(private readonly _app: JupyterFrontEnd) {}

  /** Open (or reuse) the tab of an action just sent, showing that the kernel is working. */
  started(action: IActionStarted): Tab {
    const tab = this._tab(action.action, action.id, action.title, action.rendermime);
    this._pending.set(action.seq, tab);
    tab.node.dataset.state = 'working';
    tab.content.model.clear();
    tab.content.model.add(note(`${action.title}: the kernel is building this view…`));
    this._app.shell.activateById(tab.id);
    return tab;
  }

  /** Show the outputs the kernel sent, in the tab of that item and action. */
  show(request: IDisplayRequest): Tab {
    if (request.seq !== null) {
      this._pending.delete(request.seq);
    }
    const tab = this._tab(request.action, request.id, request.title, request.rendermime);
    tab.title.label = request.title;
    tab.content.model.clear();
    tab.content.model.fromJSON(request.outputs as nbformat.IOutput[]);
    tab.node.dataset.state = 'ready';
    this._app.shell.activateById(tab.id);
    return tab;
  }

  /** Show an error in the tab waiting for request `seq`; false if no tab waits for it. */
  fail(seq: number | null, message: string): boolean {
    const tab = seq === null ? undefined : this._pending.get(seq);
    if (!tab || tab.isDisposed) {
      return false;
    }
    this._pending.delete(seq as number);
    tab.content.model.clear();
    tab.content.model.add(note(`odelab: ${message}`));
    tab.node.dataset.state = 'error';
    return true;
  }

  private _tab(
    action: ItemAction,
    id: string,
    title: string,
    rendermime: IRenderMimeRegistry
  ): Tab {
    const key = `${action}:${id}`;
    const existing = this._tabs.get(key);
    if (existing && !existing.isDisposed) {
      return existing;
    }
    // Outputs come from the user's own kernel in answer to the user's click, as a cell's do.
    const model = new OutputAreaModel({ trusted: true });
    const area = new OutputArea({ model, rendermime });
    area.addClass('jp-odelab-display');
    const tab = new MainAreaWidget({ content: area });
    tab.id = `odelab-${action.replace('_', '-')}-${this._counter++}`;
    tab.title.label = title;
    tab.title.closable = true;
    tab.addClass('jp-odelab-display-tab');
    tab.node.dataset.itemId = id;
    tab.node.dataset.action = action;
    this._tabs.set(key, tab);
    this._app.shell.add(tab, 'main');
    return tab;
  }

  private _tabs = new Map<string, Tab>();
  private _pending = new Map<number, Tab>();
  private _counter = 0;
}
