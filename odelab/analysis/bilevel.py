"""Nested (bilevel) optimisation through ODE solves: an inner argmin you can differentiate.

The inner problem minimises a cost over `x` (e.g. the initial state in 4D-Var data
assimilation) by K steps of (preconditioned) gradient descent; the outer problem differentiates
a loss of the result with respect to `theta` (step size, prior, network weights, ...):

    >>> x_star = ol.bilevel.argmin(cost, x0, theta, steps=20, step_size=theta["eta"])
    >>> hyper = ol.gradient(lambda th: outer(ol.bilevel.argmin(cost, x0, th, ...)), theta)

Two ways to differentiate the inner solution:
  * mode="unrolled": differentiate through every inner step (exact for the K-step map; the
    inner gradients are nested `ol.gradient` calls, so the solves use a method that supports
    gradients of gradients: "auto" or "direct"). The step size and a preconditioner get
    gradients, since the K-step result depends on them.
  * mode="implicit": assume the inner descent converged (∇ₓcost = 0) and use the implicit
    function theorem: solve (∇²ₓₓcost) v = x̄ with conjugate gradients on Hessian-vector
    products (lineax), then θ̄ = −(∂²cost/∂θ∂x)ᵀ v. Memory does not grow with K, but the result
    is only as good as the inner convergence, and whatever affects only the path (step size,
    preconditioner) gets a zero gradient. Works in forward and reverse mode.

`fourdvar_cost` builds the classic strong-constraint 4D-Var cost for a System.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import InputError, MethodError, unknown_name
from .._inputs import float_array
from ..derivatives import gradient
from ..solve import method_object, record, recording, solve, solve_defaults
from ..system import System

MODES = ("unrolled", "implicit")


# --------------------------------------------------------------------------------------------
# the inner descent
# --------------------------------------------------------------------------------------------
def _descend(grad_fn: Callable, x0: Any, theta: Any, steps: int, step_size: Any,
             preconditioner: Callable | None) -> Any:
    """K steps x ← x − step_size · P(∇ₓcost(x, θ)) as one `lax.scan` (traced once)."""

    def body(x, _):
        # statuses of solves inside the scan must leave it as outputs, not as side effects
        with recording() as rec:
            g = grad_fn(x, theta)
        codes = [jnp.asarray(c) for c, _ in rec.entries]
        status = jnp.max(jnp.stack(codes)) if codes else jnp.asarray(0)
        if preconditioner is not None:
            g = preconditioner(g, theta)
        return jax.tree_util.tree_map(lambda a, b: a - step_size * b, x, g), status

    x, statuses = jax.lax.scan(body, x0, None, length=steps)
    record(jnp.max(statuses), jnp.asarray(jnp.nan))
    return x


def _nested_gradient(cost: Callable, method: Any) -> Callable:
    """∇ₓcost through `ol.gradient`, which knows when it is nested inside another derivative."""

    return lambda x, theta: gradient(lambda xx: cost(xx, theta), x, method)


# --------------------------------------------------------------------------------------------
# implicit differentiation
# --------------------------------------------------------------------------------------------
def _second_order_method(method: Any) -> Any:

    obj = method_object(method)
    if obj == "auto":
        return None  # solves then pick a second-order method for the ("reverse", 2) request
    if not any("over-reverse" in r for r in obj.capabilities.second_order):
        raise MethodError(
            f"`method={obj.name!r}` cannot give the Hessian-vector products that implicit "
            "differentiation needs. Use method='direct' or 'auto', or mode='unrolled'."
        )
    return obj


def _default_linear_solver():
    import lineax as lx

    return lx.CG(rtol=1e-10, atol=1e-12, max_steps=1000)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _implicit_argmin(cost: Callable, settings: tuple, x0: Any, theta: Any, step_size: Any):
    return _implicit_forward(cost, settings, x0, theta, step_size)


def _implicit_forward(cost, settings, x0, theta, step_size):
    steps, preconditioner, _, _ = settings
    # inside custom_jvp, statuses cannot leave as side effects; a failed solve shows as NaN
    with solve_defaults(derivative=("reverse", 1)), recording():
        return _descend(jax.grad(cost), x0, theta, steps, step_size, preconditioner)


@_implicit_argmin.defjvp
def _implicit_jvp(cost, settings, primals, tangents):
    """ẋ = −(∇²ₓₓcost)⁻¹ (∂²cost/∂x∂θ) θ̇ at the inner solution (implicit function theorem).

    Written as a JVP, so forward mode works directly and reverse mode (ol.gradient, jax.grad)
    works by transposition: the transposed linear solve is (∇²ₓₓcost) v = x̄, by CG on HVPs.
    """
    import lineax as lx

    x0, theta, step_size = primals
    _, theta_dot, _ = tangents
    x = _implicit_forward(cost, settings, x0, theta, step_size)
    _, _, method, linear_solver = settings
    grad_x = jax.grad(cost, argnums=0)
    # second derivatives of the solves: a method with Hessian-vector products
    with solve_defaults(method=method, derivative=("reverse", 2)), recording():
        _, mixed = jax.jvp(lambda th: grad_x(x, th), (theta,), (theta_dot,))
        operator = lx.FunctionLinearOperator(
            lambda v: jax.jvp(lambda xx: grad_x(xx, theta), (x,), (v,))[1],
            jax.eval_shape(lambda: x),
            tags=(lx.symmetric_tag, lx.positive_semidefinite_tag),
        )
        solver = linear_solver if linear_solver is not None else _default_linear_solver()
        v = lx.linear_solve(operator, mixed, solver, throw=False).value
    return x, jax.tree_util.tree_map(jnp.negative, v)


# --------------------------------------------------------------------------------------------
# the public functions
# --------------------------------------------------------------------------------------------
def argmin(cost: Callable[[Any, Any], Any], x0: Any, theta: Any = None, *, steps: int = 20,
           step_size: Any = 0.1, mode: str = "unrolled", preconditioner: Callable | None = None,
           method: Any = "auto", linear_solver: Any = None) -> Any:
    """The minimiser over x of `cost(x, theta)`, by `steps` of gradient descent from `x0`.

    cost: a scalar function of (x, theta) that may call `ol.solve`; x and theta are pytrees of
      float arrays. Everything the outer loss differentiates must come in through `theta` (in
      implicit mode `cost` must not close over traced values).
    step_size: a number, or a traced scalar (e.g. ``theta["eta"]``) to learn it (unrolled).
    preconditioner: optional ``P(g, theta)`` applied to each inner gradient (a learned
      preconditioner network, say): x ← x − step_size · P(∇ₓcost).
    mode: "unrolled" or "implicit" (see the module docstring for what each differentiates).
    method: the gradient method of the solves inside `cost` ("auto" or "direct" compose with
      the outer derivative; implicit mode needs one with Hessian-vector products).
    linear_solver: a lineax solver for the implicit system (default conjugate gradients;
      ``lineax.GMRES(rtol, atol)`` when the inner Hessian may be indefinite).
    """
    if mode not in MODES:
        raise unknown_name("mode", mode, MODES)
    if not callable(cost):
        raise InputError(f"`cost` must be a function cost(x, theta); got {type(cost).__name__}.")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise InputError(f"`steps={steps!r}` must be a positive whole number of inner steps.")
    x0 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype=jnp.result_type(float)), x0)
    if mode == "unrolled":
        return _descend(_nested_gradient(cost, method), x0, theta, int(steps), step_size,
                        preconditioner)
    settings = (int(steps), preconditioner, _second_order_method(method), linear_solver)
    return _implicit_argmin(cost, settings, x0, theta, jnp.asarray(step_size, dtype=float))


def fourdvar_cost(system: System, obs_times: Any, observations: Any, *, noise_std: Any = 1.0,
                  background: Any = None, background_std: Any = 1.0, t0: float | None = None,
                  rtol: Any = None, atol: Any = None) -> Callable[[Any, Any], Any]:
    """The strong-constraint 4D-Var cost of estimating a System's initial state from data.

        J(x0; θ) = ½ Σᵢ ‖(y(tᵢ; x0) − obsᵢ) / noise_std‖² + ½ ‖(x0 − x_b) / background_std‖²

    observations: (n_times, n_states) with NaN where a state is not observed. The prior term
    appears when `background` (x_b) is given; θ (a dict, or None) may override
    "background", "background_std", "noise_std" and "params" (the system's parameters), which
    lets an outer loss learn them. θ may also carry "observations" of the same shape: one cost
    then serves many trajectories (``jax.vmap`` over their observations and backgrounds, e.g.
    to train a network on a batch of them). Returns cost(x0, theta) for `argmin`.

        >>> cost = ol.bilevel.fourdvar_cost(ol.gallery.lorenz(), ts, obs, noise_std=0.5)
        >>> x_hat = ol.bilevel.argmin(cost, x_guess, {}, steps=50, step_size=1e-3)
    """

    if not isinstance(system, System):
        raise InputError(f"`system` must be an odelab System; got {type(system).__name__}.")
    ts = float_array("obs_times", obs_times)
    obs = float_array("observations", observations)
    if obs.shape != (ts.shape[0], len(system.states)):
        raise InputError(
            f"`observations` has shape {obs.shape}; expected ({ts.shape[0]}, "
            f"{len(system.states)}) (one row per time, NaN where a state is not observed)."
        )
    start = float(ts[0]) if t0 is None else float(t0)
    observed = jnp.asarray(np.isfinite(obs))
    target = jnp.asarray(np.nan_to_num(obs))
    xb_default = None if background is None else jnp.asarray(background, dtype=float)

    def cost(x0: Any, theta: Any = None) -> Any:
        theta = {} if theta is None else theta
        sol = solve(system, y0=x0, params=theta.get("params"), t_span=(start, float(ts[-1])),
                    saveat=ts, rtol=rtol, atol=atol)
        sigma = theta.get("noise_std", noise_std)
        mask, values = observed, target
        if "observations" in theta:
            given = theta["observations"]
            if jnp.shape(given) != obs.shape:
                raise InputError(
                    f"`theta['observations']` has shape {jnp.shape(given)}; expected {obs.shape}"
                    " (the shape of the `observations` the cost was built with)."
                )
            # NaN marks the unobserved entries; the double `where` keeps their gradients finite
            mask = jnp.isfinite(given)
            values = jnp.where(mask, given, 0.0)
        misfit = jnp.where(mask, (sol.ys - values) / sigma, 0.0)
        value = 0.5 * jnp.sum(misfit**2)
        xb = theta.get("background", xb_default)
        if xb is not None:
            value = value + 0.5 * jnp.sum(((x0 - xb) / theta.get("background_std",
                                                                 background_std)) ** 2)
        return value

    return cost
