/**
 * Text shown in the sidebar and the status bar, built from checked kernel replies.
 * Pure functions, unit-tested with node's test runner.
 */
import type { IEnvironmentStatus, IItem } from './protocol';

/** Three significant digits without trailing zeros after the point: 2.50 -> "2.5", 500 -> "500". */
function significant(value: number): string {
  const text = value.toPrecision(3);
  return text.includes('.') && !text.includes('e') ? text.replace(/\.?0+$/, '') : text;
}

/** "12 ms" / "2.5 s" / "3.4 min": durations readable at a glance. */
export function formatSeconds(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) {
    return '–';
  }
  if (seconds < 1) {
    return `${significant(seconds * 1000)} ms`;
  }
  if (seconds < 120) {
    return `${significant(seconds)} s`;
  }
  return `${(seconds / 60).toFixed(1)} min`;
}

/** A list of names, shortened to `limit` entries: "x, y, z +2". */
export function formatNames(names: string[], limit = 4): string {
  if (names.length === 0) {
    return '–';
  }
  const shown = names.slice(0, limit).join(', ');
  return names.length > limit ? `${shown} +${names.length - limit}` : shown;
}

/** "tsit5 · checkpoint", or "not solved yet". */
export function formatSolver(item: IItem): string {
  const parts = [item.lastSolver, item.lastMethod].filter(p => p);
  return parts.length ? parts.join(' · ') : 'not solved yet';
}

/** "run 12 ms · compile 1.3 s (2×)", or '' when nothing was timed yet. */
export function formatTimes(item: IItem): string {
  const parts: string[] = [];
  if (item.runTime !== null) {
    parts.push(`run ${formatSeconds(item.runTime)}`);
  }
  if (item.compileTime !== null) {
    const count = item.nCompiles !== null ? ` (${item.nCompiles}×)` : '';
    parts.push(`compile ${formatSeconds(item.compileTime)}${count}`);
  }
  return parts.join(' · ');
}

/** The status bar text: "odelab: cpu ×1 · float64 · compiling…". */
export function formatStatus(status: IEnvironmentStatus | null): string {
  if (status === null) {
    return 'odelab: not connected';
  }
  const parts = [`${status.backend} ×${status.deviceCount}`];
  parts.push(status.float64 ? 'float64' : 'float32');
  if (status.compiling) {
    parts.push('compiling…');
  }
  return `odelab: ${parts.join(' · ')}`;
}

/** The status bar tooltip: the device names and the odelab version. */
export function formatStatusTitle(status: IEnvironmentStatus | null): string {
  if (status === null) {
    return 'odelab is not imported in the current notebook kernel';
  }
  const devices = status.devices.length ? status.devices.join(', ') : 'none';
  return `odelab ${status.version}\nJAX backend: ${status.backend}\nDevices: ${devices}`;
}

/** Find a file name not in `taken`: "lorenz.ipynb", then "lorenz-1.ipynb", ... */
export function uniqueName(wanted: string, taken: Set<string>): string {
  if (!taken.has(wanted)) {
    return wanted;
  }
  const dot = wanted.lastIndexOf('.');
  const stem = dot > 0 ? wanted.slice(0, dot) : wanted;
  const extension = dot > 0 ? wanted.slice(dot) : '';
  for (let n = 1; ; n++) {
    const candidate = `${stem}-${n}${extension}`;
    if (!taken.has(candidate)) {
      return candidate;
    }
  }
}

/** A loss value: "0.0123", "1.23e-7". */
export function formatLoss(value: number | null): string {
  if (value === null || !Number.isFinite(value)) {
    return '–';
  }
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(2) : significant(value);
}

/** A run: "42 steps · 3.1 ms (compiled) · ok", or the solve's failure message. */
export function formatRun(item: IItem): string {
  const parts: string[] = [];
  if (item.steps !== null) {
    parts.push(`${item.steps} step${item.steps === 1 ? '' : 's'}`);
  }
  if (item.seconds !== null) {
    parts.push(`${formatSeconds(item.seconds)}${item.compiled ? ' (compiled)' : ''}`);
  }
  parts.push(item.ok === false ? (item.status ?? 'failed') : 'ok');
  return parts.join(' · ');
}

/** A run's solver and method: "tsit5 · checkpoint". */
export function formatRunSolver(item: IItem): string {
  return [item.solver, item.method].filter(p => p).join(' · ');
}

/** Where an objective was used and its size: "from check_gradient, fit · 2 parameters". */
export function formatObjective(item: IItem): string {
  const sources: { [source: string]: string } = {
    check: 'from check_gradient',
    explore: 'from explore',
    fit: 'from fit'
  };
  const parts: string[] = [];
  const from = item.sources.length ? item.sources : item.source ? [item.source] : [];
  if (from.length) {
    const names = from.map(source => (sources[source] ?? source).replace(/^from /, ''));
    parts.push(`from ${names.join(', ')}`);
  }
  if (item.nParams !== null) {
    parts.push(`${item.nParams} parameter${item.nParams === 1 ? '' : 's'}`);
  }
  return parts.join(' · ');
}

/** The objective's last gradient check: "gradient accurate", or "gradient not checked yet". */
export function formatVerdict(item: IItem): string {
  return item.verdict ? `gradient ${item.verdict}` : 'gradient not checked yet';
}

/** A fit's progress: "7/20 steps", "20/20 steps · done", "3/20 steps · stopped: …". */
export function formatFitProgress(item: IItem): string {
  const steps = item.steps ?? 0;
  const target = item.targetSteps ?? steps;
  let text = `${steps}/${target} steps`;
  if (item.done) {
    text += item.interrupted && item.stopReason ? ` · stopped: ${item.stopReason}` : ' · done';
  }
  return text;
}

/** A fit's losses: "loss 0.0123 · best 0.0101 (step 17)". */
export function formatFitLoss(item: IItem): string {
  const parts = [`loss ${formatLoss(item.loss)}`];
  if (item.best !== null) {
    const at = item.bestStep !== null ? ` (step ${item.bestStep})` : '';
    parts.push(`best ${formatLoss(item.best)}${at}`);
  }
  return parts.join(' · ');
}

/**
 * The objective a gradient check should run on: the selected item if it is an objective (or a
 * fit of a listed objective), else the objective used most recently; null when there is none.
 */
export function pickObjective(items: IItem[], selected: string | null): string | null {
  const ids = new Set(items.map(item => item.id));
  const chosen = items.find(item => item.id === selected);
  if (chosen?.kind === 'objective') {
    return chosen.id;
  }
  if (chosen?.kind === 'fit' && chosen.objectiveId && ids.has(chosen.objectiveId)) {
    return chosen.objectiveId;
  }
  let best: IItem | null = null;
  for (const item of items) {
    if (item.kind === 'objective' && (best === null || (item.lastUsed ?? 0) >= (best.lastUsed ?? 0))) {
      best = item;
    }
  }
  return best?.id ?? null;
}
