"""Templates with a neural network inside the vector field (the parameters are the network)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from .._errors import InputError
from ..system import System
from ._common import pick


def _mlp_field(t: Any, y: Any, p: Any) -> Any:
    return p(y)


def _check_size(argument: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"`{argument}={value!r}` must be an integer of at least {least}.")
    return value


def neural_ode(
    *,
    key: Any = None,
    width: int = 32,
    depth: int = 2,
    states: Sequence[str] = ("x", "y"),
    activation: Callable[[Any], Any] = jnp.tanh,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """A neural ODE y' = MLP(y): `params` is an `equinox.nn.MLP` (train it with `odelab.fit`).

    `width` and `depth` size the hidden layers; `key` (a `jax.random.key`) seeds the weights.
    """
    states = tuple(states)
    width = _check_size("width", width, 1)
    depth = _check_size("depth", depth, 0)
    mlp = eqx.nn.MLP(
        in_size=len(states),
        out_size=len(states),
        width_size=width,
        depth=depth,
        activation=activation,
        key=pick(key, jax.random.key(0)),
    )
    return System(
        _mlp_field,
        states=states,
        params=mlp,
        y0=pick(y0, [1.0] + [0.0] * (len(states) - 1)),
        t_span=pick(t_span, (0.0, 1.0)),
        name="neural_ode",
        description="A neural ODE (Chen, Rubanova, Bettencourt & Duvenaud, NeurIPS 2018): the "
        "vector field is a multilayer perceptron whose weights are the parameters.",
        stiff=False,
    )


def _hamiltonian_field(t: Any, y: Any, p: Any) -> Any:
    grad_h = jax.grad(lambda z: p(z))(y)
    dh_dq, dh_dp = jnp.split(grad_h, 2)
    return jnp.concatenate([dh_dp, -dh_dq])


def hamiltonian_network(
    *,
    key: Any = None,
    width: int = 32,
    depth: int = 2,
    dof: int = 1,
    activation: Callable[[Any], Any] = jax.nn.softplus,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """A Hamiltonian neural network: q' = dH/dp, p' = -dH/dq with H(q, p) an `equinox.nn.MLP`.

    `dof` is the number of (q, p) pairs; the state is ``(q1..q_dof, p1..p_dof)``. The flow
    conserves the learned H and volume by construction. `activation` must be smooth (its
    derivative enters the vector field).
    """
    dof = _check_size("dof", dof, 1)
    width = _check_size("width", width, 1)
    depth = _check_size("depth", depth, 0)
    if dof == 1:
        states = ("q", "p")
    else:
        states = tuple(f"q{i}" for i in range(1, dof + 1)) + tuple(
            f"p{i}" for i in range(1, dof + 1)
        )
    hamiltonian = eqx.nn.MLP(
        in_size=2 * dof,
        out_size="scalar",
        width_size=width,
        depth=depth,
        activation=activation,
        key=pick(key, jax.random.key(0)),
    )
    return System(
        _hamiltonian_field,
        states=states,
        params=hamiltonian,
        y0=pick(y0, [1.0] * dof + [0.0] * dof),
        t_span=pick(t_span, (0.0, 10.0)),
        name="hamiltonian_network",
        description="A Hamiltonian neural network (Greydanus, Dzamba & Yosinski, NeurIPS 2019): "
        "an MLP learns the energy H(q, p) and the dynamics follow Hamilton's equations, so H "
        "is conserved exactly.",
        stiff=False,
    )
