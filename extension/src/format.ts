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
