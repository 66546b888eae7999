import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  formatNames,
  formatSeconds,
  formatSolver,
  formatStatus,
  formatTimes,
  uniqueName
} from '../src/format';
import { checkItem, IItem } from '../src/protocol';

function item(fields: object): IItem {
  const checked = checkItem({ id: 'system-1', kind: 'system', name: 'lv', ...fields });
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
