"""The Hodgkin–Huxley squid axon model."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ..system import System
from ._common import pick, slider


def _linear_over_exp(x: Any, k: float) -> Any:
    """x / (1 - exp(-x/k)), continued by its limit k at x = 0.

    Two HH opening rates have this 0/0 form at one voltage each; the double `where` keeps both
    the value and its derivative finite there.
    """
    u = x / k
    near_zero = jnp.abs(u) < 1e-6
    safe_u = jnp.where(near_zero, 1.0, u)
    return jnp.where(near_zero, k * (1.0 + u / 2.0), k * safe_u / -jnp.expm1(-safe_u))


def _gate_rates(v: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Opening and closing rates (1/ms) of the m, h, n gates at membrane potential v (mV)."""
    alpha_m = 0.1 * _linear_over_exp(v + 40.0, 10.0)
    beta_m = 4.0 * jnp.exp(-(v + 65.0) / 18.0)
    alpha_h = 0.07 * jnp.exp(-(v + 65.0) / 20.0)
    beta_h = 1.0 / (1.0 + jnp.exp(-(v + 35.0) / 10.0))
    alpha_n = 0.01 * _linear_over_exp(v + 55.0, 10.0)
    beta_n = 0.125 * jnp.exp(-(v + 65.0) / 80.0)
    return alpha_m, beta_m, alpha_h, beta_h, alpha_n, beta_n


def _hodgkin_huxley_field(t: Any, y: Any, p: Any) -> Any:
    v, m, h, n = y[0], y[1], y[2], y[3]
    alpha_m, beta_m, alpha_h, beta_h, alpha_n, beta_n = _gate_rates(v)
    i_na = p["g_na"] * m**3 * h * (v - p["e_na"])
    i_k = p["g_k"] * n**4 * (v - p["e_k"])
    i_leak = p["g_l"] * (v - p["e_l"])
    return jnp.stack(
        [
            (p["current"] - i_na - i_k - i_leak) / p["c_m"],
            alpha_m * (1.0 - m) - beta_m * m,
            alpha_h * (1.0 - h) - beta_h * h,
            alpha_n * (1.0 - n) - beta_n * n,
        ]
    )


def hodgkin_huxley(
    *,
    current: float = 10.0,
    g_na: float = 120.0,
    g_k: float = 36.0,
    g_l: float = 0.3,
    e_na: float = 50.0,
    e_k: float = -77.0,
    e_l: float = -54.387,
    c_m: float = 1.0,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """The 4-state Hodgkin–Huxley model (V in mV, t in ms, resting potential -65 mV)."""
    conductance = dict(log=True, unit="mS/cm²")
    return System(
        _hodgkin_huxley_field,
        states=("V", "m", "h", "n"),
        params=dict(
            current=current, g_na=g_na, g_k=g_k, g_l=g_l, e_na=e_na, e_k=e_k, e_l=e_l, c_m=c_m
        ),
        y0=pick(y0, [-65.0, 0.05, 0.6, 0.32]),
        t_span=pick(t_span, (0.0, 50.0)),
        name="hodgkin_huxley",
        param_info=dict(
            current=slider(current, 0.0, 50.0, unit="µA/cm²", description="injected current"),
            g_na=slider(g_na, 10.0, 500.0, **conductance, description="max sodium conductance"),
            g_k=slider(g_k, 3.0, 200.0, **conductance, description="max potassium conductance"),
            g_l=slider(g_l, 0.01, 3.0, **conductance, description="leak conductance"),
            e_na=slider(e_na, 0.0, 100.0, unit="mV", description="sodium reversal potential"),
            e_k=slider(e_k, -120.0, -40.0, unit="mV", description="potassium reversal potential"),
            e_l=slider(e_l, -90.0, -30.0, unit="mV", description="leak reversal potential"),
            c_m=slider(c_m, 0.1, 10.0, log=True, unit="µF/cm²", description="membrane capacitance"),
        ),
        description="Hodgkin and Huxley's (1952, J. Physiol. 117:500) model of the squid giant "
        "axon: membrane potential V and gates m, h, n; fires repeatedly for currents above "
        "≈ 7 µA/cm².",
        stiff=False,
    )
