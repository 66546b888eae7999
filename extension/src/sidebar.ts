/**
 * The sidebar panel: the live odelab objects of the current notebook's kernel.
 */
import { Widget } from '@lumino/widgets';

import {
  formatFitLoss,
  formatFitProgress,
  formatNames,
  formatObjective,
  formatRun,
  formatRunSolver,
  formatSolver,
  formatTimes,
  formatVerdict
} from './format';
import { OdelabModel } from './model';
import { IItem, ItemKind } from './protocol';

/** The sidebar's sections, in order; recent runs come newest first. */
const GROUPS: { kind: ItemKind; title: string; newestFirst: boolean }[] = [
  { kind: 'system', title: 'Systems', newestFirst: false },
  { kind: 'objective', title: 'Objectives', newestFirst: false },
  { kind: 'fit', title: 'Fits', newestFirst: true },
  { kind: 'run', title: 'Recent runs', newestFirst: true }
];

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
    this.title.caption = 'odelab: systems, objectives, fits and runs';
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
    const selected = bridge?.selected ?? null;
    const rows: HTMLLIElement[] = [];
    for (const group of GROUPS) {
      const members = items.filter(item => item.kind === group.kind);
      if (group.newestFirst) {
        members.reverse();
      }
      if (members.length === 0) {
        continue;
      }
      const header = element('li', 'jp-odelab-group', `${group.title} (${members.length})`);
      header.dataset.kind = group.kind;
      rows.push(header);
      rows.push(...members.map(item => this._row(item, item.id === selected)));
    }
    this._list.replaceChildren(...rows);
    if (bridge === null) {
      this._empty.textContent = 'Open a notebook to see its odelab systems.';
    } else if (!bridge.connected) {
      this._empty.textContent = 'Run `import odelab as ol` in this notebook to connect.';
    } else {
      this._empty.textContent = items.length
        ? ''
        : 'Nothing yet: define a system with ol.System(...), or pass a loss function to ' +
          'ol.check_gradient, ol.explore or ol.fit.';
    }
    this._empty.hidden = this._empty.textContent === '';
  }

  private _row(item: IItem, selected: boolean): HTMLLIElement {
    const row = element('li', 'jp-odelab-item');
    row.dataset.itemId = item.id;
    row.dataset.kind = item.kind;
    row.tabIndex = 0;
    row.classList.toggle('jp-mod-selected', selected);
    row.setAttribute('aria-selected', String(selected));

    const head = element('div', 'jp-odelab-item-head');
    head.appendChild(element('span', 'jp-odelab-item-name', item.name));
    head.appendChild(element('span', 'jp-odelab-item-kind', item.kind));
    row.appendChild(head);

    switch (item.kind) {
      case 'system':
        this._systemLines(row, item);
        break;
      case 'run':
        this._runLines(row, item);
        break;
      case 'objective':
        this._objectiveLines(row, item);
        break;
      case 'fit':
        this._fitLines(row, item);
        break;
    }

    const checkable =
      item.kind === 'objective' || (item.kind === 'fit' && item.objectiveId !== null);
    if (checkable) {
      const check = element('button', 'jp-odelab-item-check jp-mod-styled', 'Check gradient');
      check.title = 'Run ol.check_gradient on this objective again and show its report';
      check.addEventListener('click', event => {
        event.stopPropagation();
        this._model.select(item.id);
        this._actions.checkGradient(item.id);
      });
      row.appendChild(check);
    }
    // A click selects the item (the target of "Check odelab Gradient"); on a system it also
    // opens the explorer.
    const activate = () => {
      this._model.select(item.id);
      if (item.kind === 'system') {
        this._actions.openExplorer(item.id);
      }
    };
    if (item.kind === 'system') {
      row.title = `Open the explorer for ${item.name}`;
    } else if (checkable) {
      row.title = `Select ${item.name} for "Check odelab Gradient"`;
    }
    row.addEventListener('click', activate);
    row.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        activate();
      }
    });
    return row;
  }

  private _systemLines(row: HTMLLIElement, item: IItem): void {
    if (item.states.length || item.params.length) {
      const vars = `states ${formatNames(item.states)} · params ${formatNames(item.params)}`;
      row.appendChild(element('div', 'jp-odelab-item-vars', vars));
    }
    row.appendChild(element('div', 'jp-odelab-item-solver', formatSolver(item)));
    const times = formatTimes(item);
    if (times) {
      row.appendChild(element('div', 'jp-odelab-item-times', times));
    }
  }

  private _runLines(row: HTMLLIElement, item: IItem): void {
    const solver = formatRunSolver(item);
    if (solver) {
      row.appendChild(element('div', 'jp-odelab-item-solver', solver));
    }
    const status = element('div', 'jp-odelab-item-status', formatRun(item));
    status.dataset.ok = String(item.ok !== false);
    row.appendChild(status);
    const when = item.finished !== null ? new Date(item.finished * 1000) : null;
    row.title = [
      `${item.system ?? item.name} solved${when ? ` at ${when.toLocaleTimeString()}` : ''}`,
      item.tSpan.length === 2 ? `t from ${item.tSpan[0]} to ${item.tSpan[1]}` : '',
      item.status && item.ok === false ? item.status : ''
    ]
      .filter(line => line)
      .join('\n');
  }

  private _objectiveLines(row: HTMLLIElement, item: IItem): void {
    const origin = formatObjective(item);
    if (origin) {
      row.appendChild(element('div', 'jp-odelab-item-source', origin));
    }
    const verdict = element('div', 'jp-odelab-item-verdict', formatVerdict(item));
    verdict.dataset.verdict = item.verdict ?? 'unchecked';
    const details = [item.headline, ...item.methods].filter(line => line);
    if (details.length) {
      verdict.title = details.join('\n');
    }
    row.appendChild(verdict);
  }

  private _fitLines(row: HTMLLIElement, item: IItem): void {
    const bar = element('progress', 'jp-odelab-item-progress');
    bar.max = 1;
    bar.value = item.progress ?? 0;
    row.appendChild(bar);
    const progress = element('div', 'jp-odelab-item-fit-progress', formatFitProgress(item));
    progress.dataset.done = String(item.done === true);
    row.appendChild(progress);
    row.appendChild(element('div', 'jp-odelab-item-loss', formatFitLoss(item)));
  }

  private _list: HTMLUListElement;
  private _empty: HTMLParagraphElement;
}
