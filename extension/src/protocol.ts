/**
 * The odelab comm protocol, front-end side: the requests this extension sends to the kernel and
 * the check applied to every reply before anything is shown. Mirrors odelab/_comm_schema.py.
 *
 * Pure functions only (no JupyterLab imports), so they are unit-tested with node's test runner.
 */

export const COMM_TARGET = 'odelab';
export const ITEM_KINDS = ['system', 'objective', 'run', 'fit'] as const;
export const METHOD_NAMES = [
  'auto',
  'checkpoint',
  'direct',
  'backsolve',
  'interpolating',
  'forward',
  'forward-sensitivity',
  'finite-difference'
] as const;
export const MAX_ITEMS = 1000;
export const MAX_OUTPUTS = 20;

const ITEM_ID = /^[A-Za-z0-9_-]{1,64}$/;
const SOLVER_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const MAX_TEXT = 2000;

export type ItemKind = (typeof ITEM_KINDS)[number];

/** The actions the kernel performs on one item, each answered by a "display" reply. */
export const ITEM_ACTIONS = ['open_explorer', 'check_gradient'] as const;
export type ItemAction = (typeof ITEM_ACTIONS)[number];

/** One live object of the kernel, as listed in the sidebar. */
export interface IItem {
  id: string;
  kind: ItemKind;
  name: string;
  states: string[];
  params: string[];
  lastSolver: string | null;
  lastMethod: string | null;
  verdict: string | null;
  runTime: number | null;
  compileTime: number | null;
  nCompiles: number | null;
  progress: number | null;
  loss: number | null;
}

/** The kernel's computing environment, shown in the status bar. */
export interface IEnvironmentStatus {
  backend: string;
  devices: string[];
  deviceCount: number;
  float64: boolean;
  compiling: boolean;
  version: string;
}

export interface ISolverDefaults {
  solver?: string;
  method?: string;
  rtol?: number;
  atol?: number;
}

/** A display_data output to render in a main-area tab. */
export interface IDisplayOutput {
  output_type: 'display_data';
  data: { [mime: string]: unknown };
  metadata: { [key: string]: unknown };
}

export type Reply =
  | { type: 'items'; seq: number | null; items: IItem[] }
  | { type: 'status'; seq: number | null; status: IEnvironmentStatus }
  | { type: 'defaults'; seq: number | null; defaults: ISolverDefaults }
  | {
      type: 'display';
      seq: number | null;
      action: ItemAction;
      id: string;
      title: string;
      outputs: IDisplayOutput[];
    }
  | { type: 'error'; seq: number | null; message: string };

export type RequestType =
  | 'hello'
  | 'list'
  | 'status'
  | 'open_explorer'
  | 'check_gradient'
  | 'settings';

export interface IRequest {
  type: RequestType;
  seq?: number;
  id?: string;
  settings?: ISolverDefaults;
}

/** The result of checking one reply: the reply, or why it was refused. */
export type Checked = { ok: true; reply: Reply } | { ok: false; error: string };

type Json = { [key: string]: unknown };

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(value: unknown, limit = MAX_TEXT): string | null {
  if (typeof value !== 'string') {
    return null;
  }
  return value.length <= limit ? value : value.slice(0, limit - 1) + '…';
}

function finite(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function names(value: unknown): string[] {
  if (Array.isArray(value)) {
    return value
      .slice(0, 200)
      .map(v => text(v, 120))
      .filter((v): v is string => v !== null);
  }
  if (isObject(value)) {
    return names(Object.keys(value));
  }
  return [];
}

export function isItemId(value: unknown): value is string {
  return typeof value === 'string' && ITEM_ID.test(value);
}

/** Check one item of an "items" reply; returns null for anything malformed. */
export function checkItem(value: unknown): IItem | null {
  if (!isObject(value) || !isItemId(value.id)) {
    return null;
  }
  const kind = value.kind;
  if (typeof kind !== 'string' || !(ITEM_KINDS as readonly string[]).includes(kind)) {
    return null;
  }
  const progress = finite(value.progress);
  return {
    id: value.id,
    kind: kind as ItemKind,
    name: text(value.name, 120) ?? value.id,
    states: names(value.states),
    params: names(value.params),
    lastSolver: text(value.last_solver, 64),
    lastMethod: text(value.last_method, 64),
    verdict: text(value.verdict, 200),
    runTime: finite(value.run_time_s),
    compileTime: finite(value.compile_time_s),
    nCompiles: finite(value.n_compiles),
    progress: progress === null ? null : Math.min(1, Math.max(0, progress)),
    loss: finite(value.loss)
  };
}

function checkStatus(value: unknown): IEnvironmentStatus | null {
  if (!isObject(value)) {
    return null;
  }
  const backend = text(value.backend, 64);
  const count = finite(value.device_count);
  if (backend === null || count === null || typeof value.float64 !== 'boolean') {
    return null;
  }
  return {
    backend,
    devices: names(value.devices),
    deviceCount: count,
    float64: value.float64,
    compiling: value.compiling === true,
    version: text(value.version, 64) ?? ''
  };
}

function checkDefaults(value: unknown): ISolverDefaults | null {
  if (!isObject(value)) {
    return null;
  }
  const defaults: ISolverDefaults = {};
  const solver = text(value.solver, 64);
  const method = text(value.method, 64);
  const rtol = finite(value.rtol);
  const atol = finite(value.atol);
  if (solver !== null) {
    defaults.solver = solver;
  }
  if (method !== null) {
    defaults.method = method;
  }
  if (rtol !== null) {
    defaults.rtol = rtol;
  }
  if (atol !== null) {
    defaults.atol = atol;
  }
  return defaults;
}

function checkOutput(value: unknown): IDisplayOutput | null {
  if (!isObject(value) || value.output_type !== 'display_data' || !isObject(value.data)) {
    return null;
  }
  const metadata = isObject(value.metadata) ? value.metadata : {};
  return { output_type: 'display_data', data: value.data, metadata };
}

/** Check a message received from the kernel. Nothing unchecked reaches the page. */
export function checkReply(data: unknown): Checked {
  if (!isObject(data)) {
    return { ok: false, error: 'a reply must be a JSON object' };
  }
  const rawSeq = finite(data.seq);
  const seq = rawSeq !== null && Number.isInteger(rawSeq) && rawSeq >= 0 ? rawSeq : null;
  switch (data.type) {
    case 'items': {
      if (!Array.isArray(data.items) || data.items.length > MAX_ITEMS) {
        return { ok: false, error: `"items" must be a list of at most ${MAX_ITEMS} items` };
      }
      const items = data.items.map(checkItem).filter((i): i is IItem => i !== null);
      return { ok: true, reply: { type: 'items', seq, items } };
    }
    case 'status': {
      const status = checkStatus(data.status);
      return status
        ? { ok: true, reply: { type: 'status', seq, status } }
        : { ok: false, error: '"status" lacks backend, device_count or float64' };
    }
    case 'defaults': {
      const defaults = checkDefaults(data.defaults);
      return defaults
        ? { ok: true, reply: { type: 'defaults', seq, defaults } }
        : { ok: false, error: '"defaults" must be an object' };
    }
    case 'display': {
      if (!isItemId(data.id) || !Array.isArray(data.outputs)) {
        return { ok: false, error: '"display" needs an item id and a list of outputs' };
      }
      const action = data.action;
      if (typeof action !== 'string' || !(ITEM_ACTIONS as readonly string[]).includes(action)) {
        return { ok: false, error: '"display" needs the action it answers' };
      }
      if (data.outputs.length > MAX_OUTPUTS) {
        return { ok: false, error: `"display" carries at most ${MAX_OUTPUTS} outputs` };
      }
      const outputs = data.outputs.map(checkOutput);
      if (outputs.some(o => o === null)) {
        return { ok: false, error: '"display" outputs must be display_data objects' };
      }
      const title = text(data.title, 120) ?? data.id;
      return {
        ok: true,
        reply: {
          type: 'display',
          seq,
          action: action as ItemAction,
          id: data.id,
          title,
          outputs: outputs as IDisplayOutput[]
        }
      };
    }
    case 'error': {
      const message = text(data.message);
      return message !== null
        ? { ok: true, reply: { type: 'error', seq, message } }
        : { ok: false, error: '"error" needs a message' };
    }
    default:
      return { ok: false, error: `unknown reply type ${JSON.stringify(data.type)}` };
  }
}

/**
 * Build the "settings" request from user settings, keeping only valid values
 * (the kernel rejects the whole message otherwise).
 */
export function settingsRequest(raw: { [key: string]: unknown }): IRequest {
  const settings: ISolverDefaults = {};
  if (typeof raw.solver === 'string' && SOLVER_NAME.test(raw.solver)) {
    settings.solver = raw.solver;
  }
  if (typeof raw.method === 'string' && (METHOD_NAMES as readonly string[]).includes(raw.method)) {
    settings.method = raw.method;
  }
  for (const key of ['rtol', 'atol'] as const) {
    const value = finite(raw[key]);
    if (value !== null && value > 0 && value < 1) {
      settings[key] = value;
    }
  }
  return { type: 'settings', settings };
}

/** Build an action request on one item; throws on an id that could not have come from the kernel. */
export function actionRequest(type: ItemAction, id: string): IRequest {
  if (!isItemId(id)) {
    throw new Error(`odelab: ${JSON.stringify(id)} is not an item id`);
  }
  return { type, id };
}
