"""Stiff chemical kinetics from the standard test sets (Hairer & Wanner; Mazzia & Magherini)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from ..system import System
from ._common import pick, slider


def _robertson_field(t: Any, y: Any, p: Any) -> Any:
    y1, y2, y3 = y[0], y[1], y[2]
    slow = p["k1"] * y1
    fast = p["k3"] * y2 * y3
    very_fast = p["k2"] * y2**2
    return jnp.stack([-slow + fast, slow - fast - very_fast, very_fast])


def robertson(
    *,
    k1: float = 0.04,
    k2: float = 3e7,
    k3: float = 1e4,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """Robertson's reactions A → B (k1), 2B → B + C (k2), B + C → A + C (k3)."""
    return System(
        _robertson_field,
        states=("y1", "y2", "y3"),
        params=dict(k1=k1, k2=k2, k3=k3),
        y0=pick(y0, [1.0, 0.0, 0.0]),
        t_span=pick(t_span, (0.0, 40.0)),
        name="robertson",
        param_info=dict(
            k1=slider(k1, 1e-3, 1.0, log=True, unit="1/time", description="slow reaction A → B"),
            k2=slider(
                k2, 1e5, 1e9, log=True, unit="1/time", description="fast reaction 2B → B + C"
            ),
            k3=slider(k3, 1e2, 1e6, log=True, unit="1/time", description="reaction B + C → A + C"),
        ),
        description="Robertson's (1966) autocatalytic reactions, the classic stiff test (rate "
        "constants spanning 10⁹; Hairer & Wanner, Solving ODEs II, §IV.1). Mass y1+y2+y3 is "
        "conserved.",
        stiff=True,
    )


def _oregonator_field(t: Any, y: Any, p: Any) -> Any:
    y1, y2, y3 = y[0], y[1], y[2]
    s, q, w, f = p["s"], p["q"], p["w"], p["f"]
    return jnp.stack(
        [
            s * (y2 - y1 * y2 + y1 - q * y1**2),
            (-y2 - y1 * y2 + f * y3) / s,
            w * (y1 - y3),
        ]
    )


def oregonator(
    *,
    s: float = 77.27,
    q: float = 8.375e-6,
    w: float = 0.161,
    f: float = 1.0,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """The Oregonator in Hairer & Wanner's scaling (problem OREGO): a stiff chemical oscillator."""
    return System(
        _oregonator_field,
        states=("y1", "y2", "y3"),
        params=dict(s=s, q=q, w=w, f=f),
        y0=pick(y0, [1.0, 2.0, 3.0]),
        t_span=pick(t_span, (0.0, 360.0)),
        name="oregonator",
        param_info=dict(
            s=slider(s, 1.0, 1000.0, log=True, description="time-scale ratio"),
            q=slider(q, 1e-7, 1e-3, log=True, description="autocatalysis saturation"),
            w=slider(w, 0.01, 10.0, log=True, description="catalyst relaxation rate"),
            f=slider(f, 0.1, 3.0, description="stoichiometric factor"),
        ),
        description="The Field–Noyes (1974) Oregonator model of the Belousov–Zhabotinsky "
        "reaction, in the scaling of Hairer & Wanner's OREGO test: stiff relaxation "
        "oscillations with period ≈ 300.",
        stiff=True,
    )


_HIRES_RATES = dict(
    k1=1.71,
    k2=0.43,
    k3=8.32,
    k4=0.69,
    k5=0.035,
    k6=8.32,
    k_plus=280.0,
    k_minus=0.69,
    k_star=0.69,
    o_ks=0.0007,
)  # fmt: skip  (the IVP test set's values; slider ranges span a decade around them)
_HIRES_STATES = ("Pr", "Pfr", "PrX", "PfrX", "PrX2", "PfrX2", "PfrX2E", "E")


def _hires_field(t: Any, y: Any, p: Any) -> Any:
    pr, pfr, prx, pfrx, prx2, pfrx2, pfrx2e, e = (y[i] for i in range(8))
    k1, k2, k3, k4, k5, k6 = (p[f"k{i}"] for i in range(1, 7))
    binding = p["k_plus"] * pfrx2 * e
    release = (k2 + p["k_minus"] + p["k_star"]) * pfrx2e
    return jnp.stack(
        [
            -k1 * pr + k2 * pfr + k6 * prx + p["o_ks"],
            k1 * pr - (k2 + k3) * pfr,
            -(k1 + k6) * prx + k2 * pfrx + k5 * prx2,
            k3 * pfr + k1 * prx - (k2 + k4) * pfrx,
            -(k1 + k5) * prx2 + k2 * pfrx2 + k2 * pfrx2e,
            k4 * pfrx + k1 * prx2 - k2 * pfrx2 + p["k_minus"] * pfrx2e - binding,
            binding - release,
            release - binding,
        ]
    )


def hires(
    *,
    k1: float = 1.71,
    k2: float = 0.43,
    k3: float = 8.32,
    k4: float = 0.69,
    k5: float = 0.035,
    k6: float = 8.32,
    k_plus: float = 280.0,
    k_minus: float = 0.69,
    k_star: float = 0.69,
    o_ks: float = 0.0007,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """HIRES, the 8-species phytochrome model of Schäfer (1975); stiff, with a sharp transient.

    The states are the red (Pr) and far-red (Pfr) phytochrome forms, free and bound to the
    receptors X and X2, and the enzyme E. The defaults are those of the IVP test set.
    """
    params = dict(
        k1=k1, k2=k2, k3=k3, k4=k4, k5=k5, k6=k6,
        k_plus=k_plus, k_minus=k_minus, k_star=k_star, o_ks=o_ks,
    )  # fmt: skip
    info = {
        name: slider(params[name], _HIRES_RATES[name] / 10.0, _HIRES_RATES[name] * 10.0,
                     log=True, unit="1/time", description=text)
        for name, text in (
            ("k1", "light conversion Pr → Pfr"),
            ("k2", "light conversion Pfr → Pr"),
            ("k3", "binding of Pfr to X"),
            ("k4", "transfer PfrX → PfrX2"),
            ("k5", "transfer PrX2 → PrX"),
            ("k6", "release PrX → Pr"),
            ("k_plus", "binding of enzyme E to PfrX2"),
            ("k_minus", "unbinding of E from PfrX2E"),
            ("k_star", "catalytic step PfrX2E → products"),
            ("o_ks", "synthesis of Pr (a source term)"),
        )
    }  # fmt: skip
    return System(
        _hires_field,
        states=_HIRES_STATES,
        params=params,
        y0=pick(y0, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057]),
        t_span=pick(t_span, (0.0, 321.8122)),
        name="hires",
        param_info=info,
        description="HIRES: the high irradiance response of photomorphogenesis (Schäfer 1975), "
        "an 8-species stiff test of Hairer & Wanner and the IVP test set of Mazzia & Magherini; "
        "E + PfrX2E is conserved.",
        stiff=True,
    )
