/**
 * The connection to odelab inside notebook kernels: one KernelBridge per kernel (one comm, target
 * "odelab"), and the OdelabModel that follows the current notebook. No drawing here.
 */
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import {
  actionRequest,
  checkReply,
  COMM_TARGET,
  ICapabilities,
  IEnvironmentStatus,
  IItem,
  IRequest,
  ISolverDefaults,
  ItemAction,
  Reply
} from './protocol';

/** An action on an item that was sent to a kernel; its answer comes later. */
export interface IActionStarted {
  action: ItemAction;
  id: string;
  title: string;
  seq: number;
  rendermime: IRenderMimeRegistry;
}

/** A tab's worth of outputs the kernel asked to show (explorer, gradient report). */
export interface IDisplayRequest {
  action: ItemAction;
  id: string;
  title: string;
  seq: number | null;
  outputs: Extract<Reply, { type: 'display' }>['outputs'];
  rendermime: IRenderMimeRegistry;
}

/** An error reported by the kernel, with the sequence number of the request it answers. */
export interface IKernelError {
  message: string;
  seq: number | null;
}

const ACTION_TITLES: { [action in ItemAction]: string } = {
  open_explorer: 'Explorer',
  check_gradient: 'Gradient check'
};

/**
 * The odelab side of one kernel: its items, its environment status, and the actions on items.
 *
 * The comm is opened from either end: by this bridge when it is created (works if odelab was
 * already imported), or by the kernel when `import odelab` runs (accepted through the comm target
 * registered here). The newest comm wins.
 */
export class KernelBridge {
  constructor(
    readonly kernel: Kernel.IKernelConnection,
    readonly rendermime: IRenderMimeRegistry
  ) {
    kernel.registerCommTarget(COMM_TARGET, this._onCommOpen);
    kernel.statusChanged.connect(this._onKernelStatus, this);
    this._openFromFrontEnd();
  }

  get items(): IItem[] {
    return this._items;
  }

  get status(): IEnvironmentStatus | null {
    return this._status;
  }

  get defaults(): ISolverDefaults | null {
    return this._defaults;
  }

  /** The method and solver names this kernel's odelab offers. */
  get capabilities(): ICapabilities | null {
    return this._capabilities;
  }

  /** The item selected in the sidebar (the target of "Check odelab Gradient"), if still listed. */
  get selected(): string | null {
    const id = this._selected;
    return id !== null && this._items.some(item => item.id === id) ? id : null;
  }

  set selected(id: string | null) {
    if (id !== this._selected) {
      this._selected = id;
      this._changed.emit();
    }
  }

  /** Whether odelab answers in this kernel (a comm is open and the kernel has replied). */
  get connected(): boolean {
    return this._comm !== null && this._status !== null;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get displayRequested(): ISignal<this, IDisplayRequest> {
    return this._displayRequested;
  }

  get errorReceived(): ISignal<this, IKernelError> {
    return this._errorReceived;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Ask the kernel to run an action on an item; null when odelab is not connected. */
  request(action: ItemAction, id: string): IActionStarted | null {
    const seq = this._send(actionRequest(action, id));
    if (seq === null) {
      return null;
    }
    const name = this._items.find(item => item.id === id)?.name ?? id;
    const title = `${ACTION_TITLES[action]}: ${name}`;
    return { action, id, title, seq, rendermime: this.rendermime };
  }

  /** Send solver defaults now and again whenever the kernel (re)connects. */
  applySettings(request: IRequest): void {
    this._settings = request;
    this._send(request);
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this.kernel.statusChanged.disconnect(this._onKernelStatus, this);
    if (!this.kernel.isDisposed) {
      this.kernel.removeCommTarget(COMM_TARGET, this._onCommOpen);
    }
    this._comm = null;
    Signal.clearData(this);
  }

  private _openFromFrontEnd(): void {
    if (this.kernel.isDisposed) {
      return;
    }
    try {
      const comm = this.kernel.createComm(COMM_TARGET);
      this._wire(comm);
      // A kernel without odelab answers with comm_close; onClose then leaves us disconnected.
      comm.open({ type: 'hello' });
      this._comm = comm;
    } catch (error) {
      console.warn('odelab: could not open a comm', error);
    }
  }

  private _attach(comm: Kernel.IComm): void {
    const previous = this._comm;
    this._wire(comm);
    this._comm = comm;
    if (previous && previous !== comm && !previous.isDisposed) {
      previous.close();
    }
    this._send({ type: 'hello' });
  }

  private _wire(comm: Kernel.IComm): void {
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => this._onMessage(msg.content.data);
    comm.onClose = () => {
      if (this._comm === comm) {
        this._comm = null;
        this._items = [];
        this._status = null;
        this._changed.emit();
      }
    };
  }

  /** Send a request; returns its sequence number, or null when there is no comm. */
  private _send(request: IRequest): number | null {
    if (!this._comm || this._comm.isDisposed) {
      return null;
    }
    const seq = this._seq++;
    this._comm.send({ ...request, seq } as any);
    return seq;
  }

  private _onMessage(data: unknown): void {
    const checked = checkReply(data);
    if (!checked.ok) {
      console.warn(`odelab: ignored a malformed message from the kernel (${checked.error})`);
      return;
    }
    const reply = checked.reply;
    switch (reply.type) {
      case 'items':
        this._items = reply.items;
        this._changed.emit();
        break;
      case 'status':
        if (this._status === null && this._settings) {
          this._send(this._settings);
        }
        this._status = reply.status;
        this._changed.emit();
        break;
      case 'defaults':
        this._defaults = reply.defaults;
        this._changed.emit();
        break;
      case 'capabilities':
        this._capabilities = { methods: reply.methods, solvers: reply.solvers };
        this._changed.emit();
        break;
      case 'display':
        this._displayRequested.emit({
          action: reply.action,
          id: reply.id,
          title: reply.title,
          seq: reply.seq,
          outputs: reply.outputs,
          rendermime: this.rendermime
        });
        break;
      case 'error':
        this._errorReceived.emit({ message: reply.message, seq: reply.seq });
        break;
    }
  }

  private _onKernelStatus(_: Kernel.IKernelConnection, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      this._comm = null;
      this._items = [];
      this._status = null;
      this._changed.emit();
    }
  }

  private _onCommOpen = (comm: Kernel.IComm): void => this._attach(comm);
  private _comm: Kernel.IComm | null = null;
  private _items: IItem[] = [];
  private _selected: string | null = null;
  private _status: IEnvironmentStatus | null = null;
  private _defaults: ISolverDefaults | null = null;
  private _capabilities: ICapabilities | null = null;
  private _settings: IRequest | null = null;
  private _seq = 0;
  private _disposed = false;
  private _changed = new Signal<this, void>(this);
  private _displayRequested = new Signal<this, IDisplayRequest>(this);
  private _errorReceived = new Signal<this, IKernelError>(this);
}

/**
 * Follows the notebooks: keeps one bridge per notebook kernel and tells which one belongs to the
 * current notebook. Views listen to `changed` only.
 */
export class OdelabModel {
  constructor(tracker: INotebookTracker) {
    this._tracker = tracker;
    tracker.widgetAdded.connect((_, panel) => this._follow(panel));
    tracker.forEach(panel => this._follow(panel));
    tracker.currentChanged.connect(() => this._changed.emit());
  }

  /** The bridge of the current notebook's kernel, or null without a notebook or kernel. */
  get current(): KernelBridge | null {
    const panel = this._tracker.currentWidget;
    const kernel = panel?.sessionContext.session?.kernel;
    return kernel ? (this._bridges.get(kernel) ?? null) : null;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get displayRequested(): ISignal<this, IDisplayRequest> {
    return this._displayRequested;
  }

  get errorReceived(): ISignal<this, IKernelError> {
    return this._errorReceived;
  }

  /** Emitted when an action was sent, so a view can show that work is under way. */
  get actionStarted(): ISignal<this, IActionStarted> {
    return this._actionStarted;
  }

  /** Select an item of the current notebook's kernel in the sidebar (null: none). */
  select(id: string | null): void {
    const bridge = this.current;
    if (bridge) {
      bridge.selected = id;
    }
  }

  /** Run an action on an item of the current notebook's kernel. */
  request(action: ItemAction, id: string): IActionStarted | null {
    const started = this.current?.request(action, id) ?? null;
    if (started) {
      this._actionStarted.emit(started);
    }
    return started;
  }

  /** Send these settings to every connected kernel now and to kernels connecting later. */
  applySettings(request: IRequest): void {
    this._settings = request;
    this._bridges.forEach(bridge => bridge.applySettings(request));
  }

  private _follow(panel: NotebookPanel): void {
    const context = panel.sessionContext;
    const connect = () => {
      const kernel = context.session?.kernel;
      if (kernel && !this._bridges.has(kernel)) {
        this._bridges.set(kernel, this._createBridge(kernel, panel.content.rendermime));
      }
      this._changed.emit();
    };
    context.kernelChanged.connect((_, change) => {
      const old = change.oldValue;
      if (old) {
        this._bridges.get(old)?.dispose();
        this._bridges.delete(old);
      }
      connect();
    });
    connect();
  }

  private _createBridge(
    kernel: Kernel.IKernelConnection,
    rendermime: IRenderMimeRegistry
  ): KernelBridge {
    const bridge = new KernelBridge(kernel, rendermime);
    bridge.changed.connect(() => this._changed.emit());
    bridge.displayRequested.connect((_, request) => this._displayRequested.emit(request));
    bridge.errorReceived.connect((_, error) => this._errorReceived.emit(error));
    if (this._settings) {
      bridge.applySettings(this._settings);
    }
    kernel.disposed.connect(() => {
      bridge.dispose();
      this._bridges.delete(kernel);
      this._changed.emit();
    });
    return bridge;
  }

  private _tracker: INotebookTracker;
  private _bridges = new Map<Kernel.IKernelConnection, KernelBridge>();
  private _settings: IRequest | null = null;
  private _changed = new Signal<this, void>(this);
  private _displayRequested = new Signal<this, IDisplayRequest>(this);
  private _errorReceived = new Signal<this, IKernelError>(this);
  private _actionStarted = new Signal<this, IActionStarted>(this);
}
