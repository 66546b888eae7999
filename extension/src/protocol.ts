/**
 * The odelab comm protocol, front-end side: the requests this extension sends to the kernel and
 * the check applied to every reply before anything is shown. Mirrors odelab/lab/schema.py (requests)
 * and odelab/lab/feed.py + bridge.py (replies).
 *
 * Pure functions only (no JupyterLab imports), so they are unit-tested with node's test runner.
 */

export const COMM_TARGET = 'odelab';
export const ITEM_KINDS = ['system', 'objective', 'run', 'fit'] as const;
export const MAX_ITEMS = 1000;
export const MAX_OUTPUTS = 20;

const ITEM_ID = /^[A-Za-z0-9_-]{1,64}$/;
const SOLVER_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
// Method names are the kernel's (its `capabilities` reply lists them; ol.methods() in Python):
// only their shape is checked here, the kernel refuses a name it does not know.
const METHOD_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const MAX_TEXT = 2000;

export type ItemKind = (typeof ITEM_KINDS)[number];

/** The actions the kernel performs on one item, each answered by a "display" reply. */
export const ITEM_ACTIONS = ['open_explorer', 'check_gradient'] as const;
export type ItemAction = (typeof ITEM_ACTIONS)[number];

/**
 * One live object of the kernel, as listed in the sidebar. The kernel's item fields
 * (odelab/lab/feed.py) are read in `checkItem`; tests/test_lab_feed.py checks that every field
 * the kernel sends is read there.
 */
export interface IItem {
  id: string;
  kind: ItemKind;
  name: string;
  /** system: its kind ("ode", "delay"). */
  systemKind: string | null;
  states: string[];
  params: string[];
  lastSolver: string | null;
  lastMethod: string | null;
  runTime: number | null;
  compileTime: number | null;
  nCompiles: number | null;
  /** objective: where it came from ("check", "explore", "fit"), its size, its last check. */
  source: string | null;
  sources: string[];
  nParams: number | null;
  verdict: string | null;
  headline: string | null;
  methods: string[];
  checked: number | null;
  lastUsed: number | null;
  /** run: the system solved, solver and method, wall time, steps, status. */
  system: string | null;
  solver: string | null;
  method: string | null;
  tSpan: number[];
  seconds: number | null;
  compiled: boolean | null;
  steps: number | null;
  ok: boolean | null;
  status: string | null;
  finished: number | null;
  /** fit: progress (0..1), steps of target, last and best loss, whether it ended and why. */
  progress: number | null;
  targetSteps: number | null;
  loss: number | null;
  best: number | null;
  bestStep: number | null;
  done: boolean | null;
  interrupted: boolean | null;
  stopReason: string | null;
  /** fit: the id of the objective it fits (its gradient check), if listed. */
  objectiveId: string | null;
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

/** The method and solver names of the kernel's odelab (from its registries, never copied). */
export interface ICapabilities {
  methods: { ode: string[]; delay: string[] };
  solvers: { name: string; stiff: boolean; adaptive: boolean; description: string }[];
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
  | ({ type: 'capabilities'; seq: number | null } & ICapabilities)
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

function flag(value: unknown): boolean | null {
  return typeof value === 'boolean' ? value : null;
}

function numbers(value: unknown): number[] {
  return Array.isArray(value)
    ? value
        .slice(0, 16)
        .map(finite)
        .filter((v): v is number => v !== null)
    : [];
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
    systemKind: text(value.system_kind, 32),
    states: names(value.states),
    params: names(value.params),
    lastSolver: text(value.last_solver, 64),
    lastMethod: text(value.last_method, 64),
    runTime: finite(value.run_time_s),
    compileTime: finite(value.compile_time_s),
    nCompiles: finite(value.n_compiles),
    source: text(value.source, 32),
    sources: names(value.sources),
    nParams: finite(value.n_params),
    verdict: text(value.verdict, 200),
    headline: text(value.headline, 500),
    methods: names(value.methods),
    checked: finite(value.checked),
    lastUsed: finite(value.last_used),
    system: text(value.system, 120),
    solver: text(value.solver, 64),
    method: text(value.method, 64),
    tSpan: numbers(value.t_span),
    seconds: finite(value.seconds),
    compiled: flag(value.compiled),
    steps: finite(value.steps),
    ok: flag(value.ok),
    status: text(value.status, 500),
    finished: finite(value.finished),
    progress: progress === null ? null : Math.min(1, Math.max(0, progress)),
    targetSteps: finite(value.target_steps),
    loss: finite(value.loss),
    best: finite(value.best),
    bestStep: finite(value.best_step),
    done: flag(value.done),
    interrupted: flag(value.interrupted),
    stopReason: text(value.stop_reason, 500),
    objectiveId: isItemId(value.objective_id) ? value.objective_id : null
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

function checkCapabilities(data: Json): ICapabilities | null {
  const methods = data.methods;
  if (!isObject(methods) || !Array.isArray(data.solvers)) {
    return null;
  }
  const solvers = data.solvers.slice(0, 200).flatMap(value => {
    const name = isObject(value) ? text(value.name, 64) : null;
    if (!isObject(value) || name === null) {
      return [];
    }
    const description = text(value.description, 500) ?? '';
    return [{ name, stiff: value.stiff === true, adaptive: value.adaptive === true, description }];
  });
  return { methods: { ode: names(methods.ode), delay: names(methods.delay) }, solvers };
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
    case 'capabilities': {
      const capabilities = checkCapabilities(data);
      return capabilities
        ? { ok: true, reply: { type: 'capabilities', seq, ...capabilities } }
        : { ok: false, error: '"capabilities" needs methods and a list of solvers' };
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
  if (typeof raw.method === 'string' && METHOD_NAME.test(raw.method)) {
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
