import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  formatFitLoss,
  formatFitProgress,
  formatLoss,
  formatNames,
  formatObjective,
  formatRun,
  formatRunSolver,
  formatSeconds,
  formatSolver,
  formatStatus,
  formatTimes,
  formatVerdict,
  pickObjective,
  uniqueName
} from '../src/format';
import { checkItem, IItem } from '../src/protocol';

function item(fields: object): IItem {
  const checked = checkItem({ id: 'system-1', kind: 'system', name: 'lv', ...fields });
  assert.ok(checked);
  return checked;
}

function of(kind: string, id: string, fields: object = {}): IItem {
  const checked = checkItem({ id, kind, name: id, ...fields });
  assert.ok(checked);
  return checked;
}

test('durations read naturally', () => {
  assert.equal(formatSeconds(0.0123), '12.3 ms');
  assert.equal(formatSeconds(0.5), '500 ms');
  assert.equal(formatSeconds(2.5), '2.5 s');
  assert.equal(formatSeconds(600), '10.0 min');
  assert.equal(formatSeconds(null), '–');
});

test('long name lists are shortened', () => {
  assert.equal(formatNames(['a', 'b']), 'a, b');
  assert.equal(formatNames(['a', 'b', 'c', 'd', 'e', 'f']), 'a, b, c, d +2');
  assert.equal(formatNames([]), '–');
});

test('solver and times lines', () => {
  assert.equal(formatSolver(item({})), 'not solved yet');
  assert.equal(formatSolver(item({ last_solver: 'tsit5', last_method: 'checkpoint' })), 'tsit5 · checkpoint');
  assert.equal(
    formatTimes(item({ run_time_s: 0.004, compile_time_s: 1.25, n_compiles: 2 })),
    'run 4 ms · compile 1.25 s (2×)'
  );
  assert.equal(formatTimes(item({})), '');
});

test('status bar text', () => {
  assert.equal(formatStatus(null), 'odelab: not connected');
  const status = {
    backend: 'gpu',
    devices: ['gpu:0 A100', 'gpu:1 A100'],
    deviceCount: 2,
    float64: true,
    compiling: true,
    version: '0.1.0'
  };
  assert.equal(formatStatus(status), 'odelab: gpu ×2 · float64 · compiling…');
  assert.equal(formatStatus({ ...status, compiling: false, float64: false }), 'odelab: gpu ×2 · float32');
});

test('copies never overwrite existing files', () => {
  assert.equal(uniqueName('lorenz.ipynb', new Set()), 'lorenz.ipynb');
  assert.equal(
    uniqueName('lorenz.ipynb', new Set(['lorenz.ipynb', 'lorenz-1.ipynb'])),
    'lorenz-2.ipynb'
  );
});

test('runs say steps, time and status', () => {
  const run = of('run', 'run-1', {
    solver: 'tsit5',
    method: 'checkpoint',
    steps: 42,
    seconds: 1.5,
    compiled: true,
    ok: true,
    status: 'ok'
  });
  assert.equal(formatRun(run), '42 steps · 1.5 s (compiled) · ok');
  assert.equal(formatRunSolver(run), 'tsit5 · checkpoint');
  const failed = of('run', 'run-2', { steps: 2, seconds: 0.002, ok: false, status: 'max_steps hit' });
  assert.equal(formatRun(failed), '2 steps · 2 ms · max_steps hit');
});

test('objectives say where they come from and their last verdict', () => {
  const fresh = of('objective', 'objective-1', { source: 'explore', n_params: 1 });
  assert.equal(formatObjective(fresh), 'from explore · 1 parameter');
  assert.equal(formatVerdict(fresh), 'gradient not checked yet');
  const checked = of('objective', 'objective-2', { source: 'check', n_params: 3, verdict: 'accurate' });
  assert.equal(formatObjective(checked), 'from check_gradient · 3 parameters');
  assert.equal(formatVerdict(checked), 'gradient accurate');
  const twice = of('objective', 'objective-3', { source: 'fit', sources: ['check', 'fit'] });
  assert.equal(formatObjective(twice), 'from check_gradient, fit');
});

test('fits say progress, loss and best', () => {
  const running = of('fit', 'fit-1', {
    progress: 0.35,
    steps: 7,
    target_steps: 20,
    loss: 0.0123,
    best: 0.0101,
    best_step: 5,
    done: false
  });
  assert.equal(running.progress, 0.35);
  assert.equal(formatFitProgress(running), '7/20 steps');
  assert.equal(formatFitLoss(running), 'loss 0.0123 · best 0.0101 (step 5)');
  const stopped = of('fit', 'fit-2', {
    steps: 3,
    target_steps: 20,
    done: true,
    interrupted: true,
    stop_reason: 'stop() requested at step 2'
  });
  assert.equal(formatFitProgress(stopped), '3/20 steps · stopped: stop() requested at step 2');
  assert.equal(formatFitLoss(stopped), 'loss –');
  assert.equal(formatLoss(1.234e-7), '1.23e-7');
});

test('the gradient check runs on the selected objective, else the one used last', () => {
  const items = [
    of('system', 'system-1'),
    of('objective', 'objective-2', { last_used: 10 }),
    of('objective', 'objective-3', { last_used: 30 }),
    of('objective', 'objective-4', { last_used: 20 }),
    of('fit', 'fit-5', { objective_id: 'objective-2' }),
    of('fit', 'fit-6', { objective_id: 'objective-99' })
  ];
  assert.equal(pickObjective(items, 'objective-4'), 'objective-4');
  assert.equal(pickObjective(items, 'fit-5'), 'objective-2');
  assert.equal(pickObjective(items, null), 'objective-3');
  assert.equal(pickObjective(items, 'system-1'), 'objective-3');
  assert.equal(pickObjective(items, 'fit-6'), 'objective-3'); // its objective is gone
  assert.equal(pickObjective([of('system', 'system-1')], null), null);
});
