/**
 * The sidebar panel: the live odelab objects of the current notebook's kernel.
 */
import { Widget } from '@lumino/widgets';

import { formatNames, formatSolver, formatTimes } from './format';
import { OdelabModel } from './model';
import { IItem } from './protocol';

export interface ISidebarActions {
  openExplorer(id: string): void;
  checkGradient(id: string): void;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text; // never innerHTML: names come from the kernel
  }
  return node;
}

export class OdelabSidebar extends Widget {
  constructor(
    private readonly _model: OdelabModel,
    private readonly _actions: ISidebarActions
  ) {
    super();
    this.addClass('jp-odelab-sidebar');
    this.title.caption = 'odelab: live systems';
    this.node.appendChild(element('h2', 'jp-odelab-sidebar-header', 'odelab'));
    this._list = element('ul', 'jp-odelab-item-list');
    this._empty = element('p', 'jp-odelab-empty');
    this.node.appendChild(this._empty);
    this.node.appendChild(this._list);
    _model.changed.connect(this._render, this);
    this._render();
  }

  dispose(): void {
    this._model.changed.disconnect(this._render, this);
    super.dispose();
  }

  private _render(): void {
    const bridge = this._model.current;
    const items = bridge?.items ?? [];
    this._list.replaceChildren(...items.map(item => this._row(item)));
    if (bridge === null) {
      this._empty.textContent = 'Open a notebook to see its odelab systems.';
    } else if (!bridge.connected) {
      this._empty.textContent = 'Run `import odelab as ol` in this notebook to connect.';
    } else {
      this._empty.textContent = items.length ? '' : 'No systems yet: create one with ol.System(...).';
    }
    this._empty.hidden = this._empty.textContent === '';
  }

  private _row(item: IItem): HTMLLIElement {
    const row = element('li', 'jp-odelab-item');
    row.dataset.itemId = item.id;
    row.dataset.kind = item.kind;
    row.title = `Open the explorer for ${item.name}`;
    row.tabIndex = 0;

    const head = element('div', 'jp-odelab-item-head');
    head.appendChild(element('span', 'jp-odelab-item-name', item.name));
    head.appendChild(element('span', 'jp-odelab-item-kind', item.kind));
    row.appendChild(head);

    if (item.states.length || item.params.length) {
      const vars = `states ${formatNames(item.states)} · params ${formatNames(item.params)}`;
      row.appendChild(element('div', 'jp-odelab-item-vars', vars));
    }
    row.appendChild(element('div', 'jp-odelab-item-solver', formatSolver(item)));
    const times = formatTimes(item);
    if (times) {
      row.appendChild(element('div', 'jp-odelab-item-times', times));
    }
    if (item.verdict) {
      row.appendChild(element('div', 'jp-odelab-item-verdict', item.verdict));
    }
    if (item.loss !== null) {
      row.appendChild(element('div', 'jp-odelab-item-loss', `loss ${item.loss.toPrecision(4)}`));
    }
    if (item.progress !== null) {
      const bar = element('progress', 'jp-odelab-item-progress');
      bar.max = 1;
      bar.value = item.progress;
      row.appendChild(bar);
    }
    if (item.kind === 'objective' || item.kind === 'fit') {
      const check = element('button', 'jp-odelab-item-check jp-mod-styled', 'Check gradient');
      check.addEventListener('click', event => {
        event.stopPropagation();
        this._actions.checkGradient(item.id);
      });
      row.appendChild(check);
    }
    row.addEventListener('click', () => this._actions.openExplorer(item.id));
    row.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        this._actions.openExplorer(item.id);
      }
    });
    return row;
  }

  private _list: HTMLUListElement;
  private _empty: HTMLParagraphElement;
}
