import assert from 'node:assert/strict';
import { test } from 'node:test';

import { actionRequest, checkItem, checkReply, MAX_ITEMS, settingsRequest } from '../src/protocol';

test('items replies keep well-formed items and drop the rest', () => {
  const checked = checkReply({
    type: 'items',
    seq: 3,
    items: [
      {
        id: 'system-1',
        kind: 'system',
        name: 'lorenz',
        states: ['x', 'y', 'z'],
        params: { sigma: 10, rho: 28, beta: 2.67 },
        last_solver: 'tsit5',
        run_time_s: 0.012,
        progress: 1.7
      },
      { id: '../etc', kind: 'system', name: 'bad id' },
      { id: 'run-2', kind: 'plot', name: 'bad kind' },
      'not an object'
    ]
  });
  assert.equal(checked.ok, true);
  if (!checked.ok || checked.reply.type !== 'items') {
    return;
  }
  assert.equal(checked.reply.seq, 3);
  assert.equal(checked.reply.items.length, 1);
  const [item] = checked.reply.items;
  assert.deepEqual(item.states, ['x', 'y', 'z']);
  assert.deepEqual(item.params, ['sigma', 'rho', 'beta']); // names of a params dict
  assert.equal(item.lastSolver, 'tsit5');
  assert.equal(item.lastMethod, null);
  assert.equal(item.runTime, 0.012);
  assert.equal(item.progress, 1); // clamped to [0, 1]
});

test('an item without a name is named by its id; long names are clipped', () => {
  assert.equal(checkItem({ id: 'fit-9', kind: 'fit' })?.name, 'fit-9');
  const long = checkItem({ id: 'fit-9', kind: 'fit', name: 'n'.repeat(500) });
  assert.equal(long?.name.length, 120);
});

test('malformed replies are refused with a reason', () => {
  const cases: unknown[] = [
    null,
    'items',
    [],
    { type: 'eval', code: 'alert(1)' },
    { type: 'items', items: 'x' },
    { type: 'items', items: new Array(MAX_ITEMS + 1).fill({}) },
    { type: 'status', status: { backend: 'cpu' } },
    { type: 'display', id: 'system-1', outputs: [{ output_type: 'stream', text: 'x' }] },
    { type: 'display', id: 'system-1', action: 'exec', outputs: [] },
    { type: 'display', id: '<img>', outputs: [] },
    { type: 'error' }
  ];
  for (const data of cases) {
    const checked = checkReply(data);
    assert.equal(checked.ok, false, JSON.stringify(data));
  }
});

test('status, display and error replies are accepted', () => {
  const status = checkReply({
    type: 'status',
    status: { backend: 'cpu', devices: ['cpu:0 cpu'], device_count: 1, float64: true }
  });
  assert.equal(status.ok, true);
  if (status.ok && status.reply.type === 'status') {
    assert.equal(status.reply.status.compiling, false);
    assert.deepEqual(status.reply.status.devices, ['cpu:0 cpu']);
  }
  const display = checkReply({
    type: 'display',
    id: 'system-1',
    title: 'Explorer: lorenz',
    action: 'open_explorer',
    outputs: [{ output_type: 'display_data', data: { 'text/plain': 'x' } }]
  });
  assert.equal(display.ok, true);
  if (display.ok && display.reply.type === 'display') {
    assert.deepEqual(display.reply.outputs[0].metadata, {});
    assert.equal(display.reply.action, 'open_explorer');
  }
  const error = checkReply({ type: 'error', message: 'no such item', seq: 2 });
  assert.deepEqual(error, { ok: true, reply: { type: 'error', seq: 2, message: 'no such item' } });
});

test('settings requests keep only valid values', () => {
  assert.deepEqual(
    settingsRequest({ solver: 'kvaerno5', method: 'backsolve', rtol: 1e-5, atol: 1e-9 }),
    {
      type: 'settings',
      settings: { solver: 'kvaerno5', method: 'backsolve', rtol: 1e-5, atol: 1e-9 }
    }
  );
  assert.deepEqual(
    settingsRequest({ solver: 'import os', method: 'magic; rm', rtol: 2, atol: -1, extra: 1 }),
    { type: 'settings', settings: {} }
  );
});

test('action requests refuse ids the kernel could not have sent', () => {
  assert.deepEqual(actionRequest('open_explorer', 'system-1'), {
    type: 'open_explorer',
    id: 'system-1'
  });
  assert.throws(() => actionRequest('check_gradient', 'x y'), /not an item id/);
});

test('capabilities replies carry the method and solver names of the kernel', () => {
  const checked = checkReply({
    type: 'capabilities',
    seq: 0,
    methods: { ode: ['auto', 'checkpoint'], delay: ['auto', 'delay-adjoint'] },
    solvers: [{ name: 'tsit5', stiff: false, adaptive: true, description: 'Tsitouras 5(4)' }, 7]
  });
  assert.equal(checked.ok, true);
  if (checked.ok && checked.reply.type === 'capabilities') {
    assert.deepEqual(checked.reply.methods.delay, ['auto', 'delay-adjoint']);
    assert.deepEqual(checked.reply.solvers.map(s => s.name), ['tsit5']);
  }
  assert.equal(checkReply({ type: 'capabilities', methods: [] }).ok, false);
});
