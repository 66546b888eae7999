"""ol.fit with checkpoint_dir resumes only the fit that wrote the checkpoint.

The reproduction of the stale resume: a finished run of one loss was returned for another loss,
and a run with another learning rate continued the old one. Now the checkpoint records what it
trained and anything else is refused with a message saying what differs and how to go on.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import odelab as ol
from odelab.analysis.fit import CHECKPOINT_FILE, fit


def _data():
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((12, 3))
    ys = xs @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.standard_normal(12)
    return {"x": xs, "y": ys}


def _squares(p, batch):
    return jnp.mean((batch["x"] @ p["w"] + p["b"] - batch["y"]) ** 2)


def _absolute(p, batch):
    return jnp.mean(jnp.abs(batch["x"] @ p["w"] + p["b"] - batch["y"]))


P0 = {"w": np.zeros(3), "b": 0.0}


def _fit(loss, steps, checkpoint_dir=None, optimizer=None, data=None, **kw):
    return fit(loss, P0, _data() if data is None else data,
               optimizer=optimizer or optax.adam(0.05), steps=steps, progress=False,
               checkpoint_dir=checkpoint_dir, **kw)


def _same(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                      for x, y in zip(la, lb))


def test_a_finished_run_of_another_loss_is_never_returned(tmp_path):
    done = _fit(_squares, 20, tmp_path)
    assert done.steps == 20 and not done.interrupted
    # before: this returned `done` (20 steps of _squares) and never trained _absolute
    with pytest.raises(ol.InputError) as err:
        _fit(_absolute, 20, tmp_path)
    message = str(err.value)
    assert "differs from this one in the loss function" in message and CHECKPOINT_FILE in message
    assert "resume=False" in message and "resume='force'" in message
    # starting fresh trains the new loss, exactly as a fit without checkpoints does
    fresh = _fit(_absolute, 20, tmp_path, resume=False)
    alone = _fit(_absolute, 20)
    assert fresh.losses == alone.losses and _same(fresh.params, alone.params)
    assert fresh.losses != done.losses
    # and the checkpoint is now that of the new loss: it resumes without complaint
    more = _fit(_absolute, 25, tmp_path)
    longer = _fit(_absolute, 25)
    assert more.steps == 25 and more.losses == longer.losses


def test_the_same_loss_written_again_resumes_bit_for_bit(tmp_path):
    def make_loss(scale):
        def loss(p, batch):  # a new function object on every call, same code and closure
            return scale * jnp.mean((batch["x"] @ p["w"] + p["b"] - batch["y"]) ** 2)
        return loss

    full = _fit(make_loss(2.0), 12)
    stopped = _fit(make_loss(2.0), 12, tmp_path, callback=lambda ev: ev.step < 4)
    assert stopped.interrupted and stopped.steps == 5
    resumed = _fit(make_loss(2.0), 12, tmp_path)
    assert resumed.steps == 12 and resumed.losses == full.losses
    assert _same(resumed.params, full.params) and _same(resumed.opt_state, full.opt_state)
    # a captured number that differs is another loss
    with pytest.raises(ol.InputError, match="differs from this one in the loss function"):
        _fit(make_loss(3.0), 12, tmp_path)


def test_a_captured_array_that_differs_is_another_loss(tmp_path):
    target = np.linspace(0.0, 1.0, 12)

    def loss(p, batch):
        return jnp.mean((batch["x"] @ p["w"] + p["b"] - target) ** 2)

    _fit(loss, 3, tmp_path)
    target = target.copy()
    target[5] += 1e-3  # the loss reads the global `target`: same code, other values

    def loss(p, batch):  # noqa: F811 (redefined on purpose: a notebook cell run again)
        return jnp.mean((batch["x"] @ p["w"] + p["b"] - target) ** 2)

    with pytest.raises(ol.InputError, match="differs from this one in the loss function"):
        _fit(loss, 3, tmp_path)


def test_another_learning_rate_is_refused_and_named(tmp_path):
    _fit(_squares, 5, tmp_path, optimizer=optax.adam(0.05))
    with pytest.raises(ol.InputError) as err:
        _fit(_squares, 10, tmp_path, optimizer=optax.adam(0.01))
    message = str(err.value)
    # optax's step size is -learning_rate
    assert "in the optimizer (scale.step_size -0.05 in the checkpoint, -0.01 now)" in message
    # a transformation added (its state has no arrays, so only the record tells it apart)
    with pytest.raises(ol.InputError, match="the optimizer .clip.max_delta absent in the "
                                            "checkpoint, 1.0 now"):
        _fit(_squares, 10, tmp_path, optimizer=optax.chain(optax.clip(1.0), optax.adam(0.05)))


def test_inject_hyperparams_learning_rate_is_part_of_the_optimizer(tmp_path):
    # the learning rate lives in the optimizer state, which the checkpoint would restore
    _fit(_squares, 5, tmp_path, optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=0.05))
    with pytest.raises(ol.InputError, match="in the optimizer"):
        _fit(_squares, 10, tmp_path,
             optimizer=optax.inject_hyperparams(optax.adam)(learning_rate=0.01))


def test_other_data_is_refused_with_what_differs(tmp_path):
    data = _data()
    _fit(_squares, 5, tmp_path, data=data)
    changed = {"x": data["x"], "y": data["y"] + 1.0}
    with pytest.raises(ol.InputError, match="in the data .same shapes, other values"):
        _fit(_squares, 10, tmp_path, data=changed)
    fewer = {"x": data["x"][:8], "y": data["y"][:8]}
    with pytest.raises(ol.InputError, match=r"shapes float64\[12, 3\], float64\[12\] in the "
                                            r"checkpoint, float64\[8, 3\], float64\[8\] now"):
        _fit(_squares, 10, tmp_path, data=fewer)


def test_other_gradient_settings_are_named_and_force_continues(tmp_path):
    first = _fit(_squares, 6, tmp_path)
    with pytest.raises(ol.InputError, match="batch_size=None in the checkpoint, 4 now"):
        _fit(_squares, 10, tmp_path, batch_size=4)
    with pytest.raises(ol.InputError, match="method='auto' in the checkpoint, 'forward' now"):
        _fit(_squares, 10, tmp_path, method="forward")
    # resume="force" continues the checkpointed run with what is passed now
    forced = _fit(_squares, 10, tmp_path, optimizer=optax.adam(0.01), resume="force")
    assert forced.steps == 10 and forced.losses[:6] == first.losses
    fresh = _fit(_squares, 4, optimizer=optax.adam(0.01))
    assert forced.losses[6:] != fresh.losses  # it went on from step 6, not from the start
    # and the checkpoint now belongs to the forced fit
    assert _fit(_squares, 12, tmp_path, optimizer=optax.adam(0.01)).steps == 12


def test_a_checkpoint_without_a_record_of_what_it_trained(tmp_path):
    _fit(_squares, 4, tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    with np.load(path) as ck:
        arrays = {k: ck[k] for k in ck.files if k != "fingerprint"}
    np.savez(path, **arrays)  # as written by odelab before checkpoints had fingerprints
    with pytest.raises(ol.InputError, match="older odelab that did not record"):
        _fit(_squares, 6, tmp_path)
    assert _fit(_squares, 6, tmp_path, resume="force").steps == 6


def test_resume_must_be_true_false_or_force(tmp_path):
    with pytest.raises(ol.InputError, match="`resume='yes'` must be True"):
        _fit(_squares, 2, tmp_path, resume="yes")


def test_system_fits_compare_the_loss_and_the_observations(tmp_path):
    system = ol.gallery.exponential_decay(k=0.5)
    ts = np.linspace(0.0, 2.0, 9)
    ys = np.exp(-0.5 * ts)[:, None]  # closed form

    def run(steps, data=(ts, ys), **kw):
        return fit(system, {"k": 0.8}, data, optimizer=optax.adam(0.05), steps=steps,
                   progress=False, checkpoint_dir=tmp_path, **kw)

    full = fit(system, {"k": 0.8}, (ts, ys), optimizer=optax.adam(0.05), steps=8,
               progress=False)
    run(5)
    resumed = run(8)
    assert resumed.losses == full.losses and _same(resumed.params, full.params)
    with pytest.raises(ol.InputError, match="differs from this one in the loss function"):
        run(10, loss=lambda pred, obs: jnp.mean(jnp.abs(pred - obs)))
    later = np.linspace(0.0, 2.5, 9)
    # the observation times are captured by the loss; the observed values are the data
    with pytest.raises(ol.InputError,
                       match="in the loss function .*; and in the data .same shapes, other"):
        run(10, data=(later, np.exp(-0.5 * later)[:, None]))


def test_the_checkpoint_records_readable_parts(tmp_path):
    _fit(_squares, 3, tmp_path, optimizer=optax.adam(0.05))
    with np.load(tmp_path / CHECKPOINT_FILE) as ck:
        record = json.loads(str(ck["fingerprint"]))
    assert set(record) >= {"loss", "optimizer", "data", "params", "settings"}
    assert record["hyperparameters"]["scale.step_size"] == "-0.05"
    assert record["data_shapes"] == "float64[12, 3], float64[12]"
