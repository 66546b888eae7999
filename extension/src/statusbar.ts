/**
 * The status bar item: JAX backend, device count, float64, and whether XLA is compiling.
 */
import { Widget } from '@lumino/widgets';

import { formatStatus, formatStatusTitle } from './format';
import { OdelabModel } from './model';

export class OdelabStatus extends Widget {
  constructor(private readonly _model: OdelabModel) {
    super();
    this.addClass('jp-odelab-status');
    _model.changed.connect(this._render, this);
    this._render();
  }

  /** Shown only while the current notebook's kernel has odelab. */
  get isActive(): boolean {
    return this._model.current?.connected === true;
  }

  dispose(): void {
    this._model.changed.disconnect(this._render, this);
    super.dispose();
  }

  private _render(): void {
    const status = this._model.current?.status ?? null;
    this.node.textContent = formatStatus(status);
    this.node.title = formatStatusTitle(status);
    this.node.classList.toggle('jp-odelab-compiling', status?.compiling === true);
  }
}
