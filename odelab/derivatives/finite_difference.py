"""Finite differences of a whole objective: gradients, Jacobian-vector products, HVPs, Hessians.

One step rule for all of them, in this module alone.

The noise. An objective that solves an ODE is only as smooth as its solves: moving a parameter
moves the step sequence, and the value jumps by about the solver's error. That error follows
the tolerance each solve *actually* ran at, which `probe` records at the solve front
(`odelab.solve.tolerances_used`): a solve that pins `rtol=1e-11` inside `fun` makes the noise
1e-11 whatever the derivative call's own rtol. Without a recorded solve (a plain function, or
solves hidden under a vmap inside `fun`) the call's rtol stands in, and never less than machine
epsilon.

The step. Central differences err by O(h²) (O(h⁴) with Richardson extrapolation) and amplify
the noise ε by 1/h, so the noise-balanced relative step is ε^(1/3) (ε^(1/5)). How far the
objective may be trusted to be smooth is not known beforehand, though (a loss over a long
horizon varies on a much shorter scale than its parameters), so first derivatives *search*:
Richardson-extrapolated central differences at SEARCH_STEPS steps halving from SEARCH_WIDEN×
the noise-balanced one, and per component the estimate whose two neighbours agree with it best
is kept, their disagreement being its error estimate (the approach of numdifftools). A fixed
`step=` skips the search; `step="noise"` takes the noise-balanced step alone (4 evaluations per
parameter instead of 2·SEARCH_STEPS). Second derivatives difference first derivatives whose
steps are frozen where the search put them at the point (searched anew at every point, a step
could switch between neighbours and the gradient would jump), and search the outer step the
same way, starting from one balanced against the gradient's own noise, ε^(4/5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..methods.finite_difference import NOISE_STEP  # `step=` value: the balanced step alone
from ..solve.defaults import tolerances_used
from ..solve.settings import DEFAULT_RTOL

SEARCH_STEPS = 10  # steps tried per direction, each half the one before
SEARCH_WIDEN = 4.0  # the largest step tried, in noise-balanced steps


def noise_level(used: list, rtol: Any, dtype: Any) -> Any:
    """The relative noise of an objective whose solves ran at the tolerances `used` (the call's
    `rtol` when none was recorded), at least machine epsilon."""
    if used:
        level = jnp.max(jnp.stack([jnp.asarray(r, dtype=dtype) for r in used]))
    else:
        level = jnp.asarray(rtol if rtol is not None else DEFAULT_RTOL, dtype=dtype)
    return jnp.maximum(level, jnp.finfo(dtype).eps)


def probe(call: Callable, diff: Any, rtol: Any, atol: Any) -> tuple[Any, Any, list, Any]:
    """(value, aux, solve codes, noise) of the objective at `diff`, the noise from the
    tolerances its solves ran at."""
    flat, _ = ravel_pytree(diff)
    with tolerances_used() as used:
        value, (aux, codes) = call(diff, rtol, atol)
    return value, aux, codes, noise_level(used, rtol, flat.dtype)


def balanced(noise: Any, richardson: bool) -> Any:
    """The relative step that balances truncation against noise."""
    return noise ** (1.0 / 5.0 if richardson else 1.0 / 3.0)


def gradient_noise(noise: Any, richardson: bool) -> Any:
    """The noise of a difference gradient taken at the balanced step: ε^(4/5) (ε^(2/3))."""
    return noise ** (4.0 / 5.0 if richardson else 2.0 / 3.0)


def fixed_step(step: Any) -> bool:
    """Whether `step` names one step (a number or "noise") rather than asking for a search."""
    return step is not None


def step_size(noise: Any, scale: Any, *, richardson: bool, step: Any = None) -> Any:
    """A single difference step: `step` (relative) if a number, else the noise-balanced one,
    × scale."""
    relative = balanced(noise, richardson) if step is None or isinstance(step, str) else step
    return relative * scale


def central(f: Callable, x: Any, direction: Any, h: Any, richardson: bool) -> Any:
    """The central difference of f along `direction` (Richardson-extrapolated: error O(h⁴))."""
    d = lambda hh: (f(x + hh * direction) - f(x - hh * direction)) / (2 * hh)
    return (4 * d(h / 2) - d(h)) / 3 if richardson else d(h)


@dataclasses.dataclass
class Estimate:
    """Finite differences with their own error estimate (`ol.derivatives.difference_estimate`).

    value: fun at the point. values: the gradient (flattened parameters) or [the directional
    derivative]. errors: per component, how far the estimates at the neighbouring steps are
    from it (an estimate of its error). steps: the steps chosen, per component. noise: the
    relative noise assumed, from the tolerances the solves inside ran at.
    """

    value: Any
    values: np.ndarray
    errors: np.ndarray
    steps: np.ndarray
    noise: float


@dataclasses.dataclass
class Search:
    """Searched differences: per output element and direction (directions last), the estimate,
    its error estimate (the disagreement of its neighbours in the step sequence) and the step."""

    estimate: Any
    error: Any
    step: Any


def search(f: Callable, flat: Any, directions: Any, h0: Any, richardson: bool) -> Search:
    """Differences of f at `flat` along each row of `directions`, steps searched around `h0`
    (one per direction): see the module docstring. Directions are evaluated vmapped, one step
    size after another, so memory grows like a fixed-step difference's."""
    factors = SEARCH_WIDEN * 0.5 ** jnp.arange(SEARCH_STEPS, dtype=flat.dtype)
    hs = factors[:, None] * h0[None, :]  # (steps, directions)
    offsets = hs[..., None] * directions[None]  # (steps, directions, parameters)
    signed = jnp.concatenate([offsets, -offsets])
    values = jax.lax.map(lambda off: jax.vmap(lambda o: f(flat + o))(off), signed)
    plus, minus = values[:SEARCH_STEPS], values[SEARCH_STEPS:]
    extra = (1,) * (values.ndim - 2)
    d = (plus - minus) / (2 * hs.reshape(hs.shape + extra))
    r = (4 * d[1:] - d[:-1]) / 3 if richardson else d  # r[k] pairs steps k and k + 1
    gap = jnp.abs(jnp.diff(r, axis=0))
    gap = jnp.where(jnp.isfinite(gap), gap, jnp.inf)
    error = jnp.maximum(gap[:-1], gap[1:])  # for r[1:-1]: both neighbours must agree
    candidates = r[1:-1]
    best = jnp.argmin(error, axis=0)[None]
    steps = jnp.broadcast_to(hs[1:1 + candidates.shape[0]].reshape(
        (candidates.shape[0], hs.shape[1]) + extra), candidates.shape)
    pick = lambda a: jnp.moveaxis(jnp.take_along_axis(a, best, axis=0)[0], 0, -1)
    return Search(pick(candidates), pick(error), pick(steps))


def _scale(flat: Any) -> Any:
    return jnp.maximum(1.0, jnp.abs(flat))


def differences(f: Callable, flat: Any, directions: Any, h: Any, richardson: bool) -> Any:
    """Central differences of f along each row of `directions`, step h[i] along row i
    (vmapped over the directions); the directions come last."""

    def at(hh):
        plus = jax.vmap(lambda e, s: f(flat + s * e))(directions, hh)
        minus = jax.vmap(lambda e, s: f(flat - s * e))(directions, hh)
        return (plus - minus) / (2 * hh.reshape((-1,) + (1,) * (plus.ndim - 1)))

    d = at(h)
    if richardson:
        d = (4 * at(h / 2) - d) / 3
    return jnp.moveaxis(d, 0, -1)


def gradient(call: Callable, diff: Any, rtol: Any, atol: Any, step: Any, richardson: bool):
    """(value, aux, d, unravel, solve codes): central differences of a scalar or array objective
    `call(params, rtol, atol)[0]` in every direction; d has the parameters last."""
    value, aux, codes, noise = probe(call, diff, rtol, atol)
    flat, unravel = ravel_pytree(diff)
    f = lambda x: call(unravel(x), rtol, atol)[0]
    eye = jnp.eye(flat.shape[0], dtype=flat.dtype)
    if not fixed_step(step):
        found = search(f, flat, eye, balanced(noise, richardson) * _scale(flat), richardson)
        return value, aux, found.estimate, unravel, codes
    h = step_size(noise, _scale(flat), richardson=richardson, step=step)
    return value, aux, differences(f, flat, eye, h, richardson), unravel, codes


def _tangent_step(flat: Any, flat_t: Any) -> Any:
    # no component may move by more than the relative step against its own size
    relative = jnp.max(jnp.abs(flat_t) / _scale(flat))
    return 1.0 / jnp.maximum(relative, 1e-300)


def jvp(call: Callable, diff: Any, rtol: Any, atol: Any, tangent: Any, step: Any,
        richardson: bool):
    """(value, J·tangent, solve codes) by central differences along `tangent`."""
    value, _, codes, noise = probe(call, diff, rtol, atol)
    flat, unravel = ravel_pytree(diff)
    flat_t, _ = ravel_pytree(tangent)
    f = lambda x: call(unravel(x), rtol, atol)[0]
    scale = _tangent_step(flat, flat_t)
    if not fixed_step(step):
        h0 = jnp.reshape(balanced(noise, richardson) * scale, (1,))
        found = search(f, flat, flat_t[None], h0, richardson)
        return value, found.estimate[..., 0], codes
    h = step_size(noise, scale, richardson=richardson, step=step)
    return value, central(f, flat, flat_t, h, richardson), codes


def estimate(call: Callable, diff: Any, rtol: Any, atol: Any, tangent: Any, richardson: bool):
    """((value, estimate, error estimate, steps, noise), solve codes) of the searched gradient
    (tangent None; parameters last) or of the directional derivative along `tangent`."""
    value, _, codes, noise = probe(call, diff, rtol, atol)
    flat, unravel = ravel_pytree(diff)
    f = lambda x: call(unravel(x), rtol, atol)[0]
    if tangent is None:
        directions, h0 = jnp.eye(flat.shape[0], dtype=flat.dtype), _scale(flat)
    else:
        flat_t, _ = ravel_pytree(tangent)
        directions, h0 = flat_t[None], jnp.reshape(_tangent_step(flat, flat_t), (1,))
    found = search(f, flat, directions, balanced(noise, richardson) * h0, richardson)
    return (value, found.estimate, found.error, found.step, noise), codes


def _inner_gradient(f: Callable, flat: Any, noise: Any, step: Any, richardson: bool) -> Callable:
    """x -> the difference gradient of f at steps frozen at `flat` (`step` when a number, else
    those a search finds there): smooth in x, unlike one searched anew at every x, so it can be
    differenced again."""
    eye = jnp.eye(flat.shape[0], dtype=flat.dtype)
    if isinstance(step, (int, float, np.floating)) or step == NOISE_STEP:
        h = step_size(noise, _scale(flat), richardson=richardson, step=step)
    else:
        h = search(f, flat, eye, balanced(noise, richardson) * _scale(flat), richardson).step
    return lambda x: differences(f, x, eye, h, richardson)


def hvp(call: Callable, diff: Any, rtol: Any, atol: Any, vector: Any, step: Any,
        richardson: bool):
    """H·vector: searched central differences, along `vector`, of difference gradients."""
    _, _, _, noise = probe(call, diff, rtol, atol)
    flat, unravel = ravel_pytree(diff)
    flat_v, _ = ravel_pytree(vector)
    f = lambda x: call(unravel(x), rtol, atol)[0]
    grad = _inner_gradient(f, flat, noise, step, richardson)
    h0 = jnp.reshape(balanced(gradient_noise(noise, richardson), richardson)
                     * _tangent_step(flat, flat_v), (1,))
    return unravel(search(grad, flat, flat_v[None], h0, richardson).estimate[..., 0])


def hessian(call: Callable, diff: Any, rtol: Any, atol: Any, step: Any, richardson: bool):
    """The dense Hessian (symmetrised): searched central differences of difference gradients."""
    _, _, _, noise = probe(call, diff, rtol, atol)
    flat, unravel = ravel_pytree(diff)
    f = lambda x: call(unravel(x), rtol, atol)[0]
    grad = _inner_gradient(f, flat, noise, step, richardson)
    eye = jnp.eye(flat.shape[0], dtype=flat.dtype)
    h0 = balanced(gradient_noise(noise, richardson), richardson) * _scale(flat)
    rows = search(grad, flat, eye, h0, richardson).estimate
    return 0.5 * (rows + rows.T)
