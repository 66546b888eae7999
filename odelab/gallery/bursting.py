"""A stiff, bursting, conductance-based neuron with calcium dynamics (13 states).

The model neuron of the crab stomatogastric ganglion used by Prinz, Billimoria & Marder (2003,
J. Neurophysiol. 90:3998, Table 1), itself after Liu, Golowasch, Marder & Abbott (1998). Eight
currents, each a maximal conductance times gating variables times a driving force:

    C dV/dt = -(I_Na + I_CaT + I_CaS + I_A + I_KCa + I_Kd + I_H + I_leak)
    I_Na  = g_Na  m³h (V - E_Na)      I_CaT = g_CaT m³h (V - E_Ca)   I_CaS = g_CaS m³h (V - E_Ca)
    I_A   = g_A   m³h (V - E_K)       I_KCa = g_KCa m⁴  (V - E_K)    I_Kd  = g_Kd  m⁴  (V - E_K)
    I_H   = g_H   m   (V - E_H)       I_leak = g_leak (V - E_leak)
    τ_Ca d[Ca]/dt = -f (I_CaT + I_CaS) - [Ca] + [Ca]₀,     E_Ca = 12.8 mV · ln(3000 µM / [Ca])

with every gate x relaxing as dx/dt = (x∞(V) - x)/τx(V) (KCa's activation also depends on [Ca]).
States: V (mV), [Ca] (µM) and the 11 gates: 13 in all. Time in ms, conductances in mS/cm²,
C = 1 µF/cm²; f = 14.96 µM/nA on a 0.628·10⁻³ cm² cell, so f_area = 14.96 · 0.628 µM per µA/cm².

Spikes last about a millisecond while calcium and the slow gates move over hundreds, so the
Jacobian's eigenvalues span four orders of magnitude (stiff), and the spikes ride on slow bursts
(≈25 spikes, then ≈1 s of silence): a hard, honest test of gradients through a solver. The
default y0 lies on the bursting cycle, 36 ms before a burst, so 0..200 ms holds 13 spikes.

    >>> sys = ol.gallery.bursting_neuron()
    >>> fun, params = voltage_fit_problem(t_end=100.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from ..solve import solve
from ..system import System
from ._common import pick, slider

STATES = (
    "V",
    "Ca",
    "m_Na",
    "h_Na",
    "m_CaT",
    "h_CaT",
    "m_CaS",
    "h_CaS",
    "m_A",
    "h_A",
    "m_KCa",
    "m_Kd",
    "m_H",
)
CONDUCTANCES = ("g_Na", "g_CaT", "g_CaS", "g_A", "g_KCa", "g_Kd", "g_H", "g_leak")
# A bursting set of maximal conductances (mS/cm²): slow bursts of several spikes each.
BURSTING = dict(
    g_Na=100.0, g_CaT=2.5, g_CaS=6.0, g_A=50.0, g_KCa=5.0, g_Kd=100.0, g_H=0.01, g_leak=0.0
)
_AREA_FACTOR = 14.96 * 0.628  # µM per (µA/cm²)·ms⁻¹·τ: f (µM/nA) × membrane area in nA per µA/cm²


def _sigmoid(v: Any, half: float, slope: float) -> Any:
    """1 / (1 + exp((v + half) / slope)): the Boltzmann curve of Prinz et al.'s Table 1."""
    return 1.0 / (1.0 + jnp.exp((v + half) / slope))


def _steady_and_tau(v: Any, ca: Any) -> tuple[Any, Any]:
    """Steady states x∞(V, Ca) and time constants τx(V) (ms) of the 11 gates, in STATES order."""
    inf = jnp.stack(
        [
            _sigmoid(v, 25.5, -5.29),  # m_Na
            _sigmoid(v, 48.9, 5.18),  # h_Na
            _sigmoid(v, 27.1, -7.2),  # m_CaT
            _sigmoid(v, 32.1, 5.5),  # h_CaT
            _sigmoid(v, 33.0, -8.1),  # m_CaS
            _sigmoid(v, 60.0, 6.2),  # h_CaS
            _sigmoid(v, 27.2, -8.7),  # m_A
            _sigmoid(v, 56.9, 4.9),  # h_A
            ca / (ca + 3.0) * _sigmoid(v, 28.3, -12.6),  # m_KCa
            _sigmoid(v, 12.3, -11.8),  # m_Kd
            _sigmoid(v, 75.0, 5.5),  # m_H
        ]
    )
    tau = jnp.stack(
        [
            2.64 - 2.52 * _sigmoid(v, 120.0, -25.0),
            1.34 * _sigmoid(v, 62.9, -10.0) * (1.5 + _sigmoid(v, 34.9, 3.6)),
            43.4 - 42.6 * _sigmoid(v, 68.1, -20.5),
            210.0 - 179.6 * _sigmoid(v, 55.0, -16.9),
            2.8 + 14.0 / (jnp.exp((v + 27.0) / 10.0) + jnp.exp((v + 70.0) / -13.0)),
            120.0 + 300.0 / (jnp.exp((v + 55.0) / 9.0) + jnp.exp((v + 65.0) / -16.0)),
            23.2 - 20.8 * _sigmoid(v, 32.9, -15.2),
            77.2 - 58.4 * _sigmoid(v, 38.9, -26.5),
            180.6 - 150.2 * _sigmoid(v, 46.0, -22.7),
            14.4 - 12.8 * _sigmoid(v, 28.3, -19.2),
            2.0 / (jnp.exp((v + 169.7) / -11.6) + jnp.exp((v - 26.7) / 14.3)),
        ]
    )
    return inf, tau


def _bursting_field(t: Any, y: Any, p: Any) -> Any:
    v, ca, gates = y[0], y[1], y[2:]
    m_na, h_na, m_cat, h_cat, m_cas, h_cas, m_a, h_a, m_kca, m_kd, m_h = gates
    e_ca = 12.8 * jnp.log(3000.0 / ca)
    i_cat = p["g_CaT"] * m_cat**3 * h_cat * (v - e_ca)
    i_cas = p["g_CaS"] * m_cas**3 * h_cas * (v - e_ca)
    currents = (
        p["g_Na"] * m_na**3 * h_na * (v - p["E_Na"])
        + i_cat
        + i_cas
        + p["g_A"] * m_a**3 * h_a * (v - p["E_K"])
        + p["g_KCa"] * m_kca**4 * (v - p["E_K"])
        + p["g_Kd"] * m_kd**4 * (v - p["E_K"])
        + p["g_H"] * m_h * (v - p["E_H"])
        + p["g_leak"] * (v - p["E_leak"])
    )
    dv = -currents / p["C"]
    dca = (-_AREA_FACTOR * (i_cat + i_cas) - ca + p["Ca0"]) / p["tau_Ca"]
    inf, tau = _steady_and_tau(v, ca)
    return jnp.concatenate([jnp.stack([dv, dca]), (inf - gates) / tau])


def bursting_neuron(
    *,
    g_Na: float = BURSTING["g_Na"],  # noqa: N803 (the conductances' published names)
    g_CaT: float = BURSTING["g_CaT"],  # noqa: N803
    g_CaS: float = BURSTING["g_CaS"],  # noqa: N803
    g_A: float = BURSTING["g_A"],  # noqa: N803
    g_KCa: float = BURSTING["g_KCa"],  # noqa: N803
    g_Kd: float = BURSTING["g_Kd"],  # noqa: N803
    g_H: float = BURSTING["g_H"],  # noqa: N803
    g_leak: float = BURSTING["g_leak"],
    E_Na: float = 50.0,  # noqa: N803
    E_K: float = -80.0,  # noqa: N803
    E_H: float = -20.0,  # noqa: N803
    E_leak: float = -50.0,  # noqa: N803
    C: float = 1.0,  # noqa: N803
    tau_Ca: float = 200.0,  # noqa: N803
    Ca0: float = 0.05,  # noqa: N803
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """The 13-state bursting STG neuron of Prinz et al. (2003) (V in mV, [Ca] in µM, t in ms)."""
    conductance = dict(log=False, unit="mS/cm²")
    g = dict(
        g_Na=g_Na, g_CaT=g_CaT, g_CaS=g_CaS, g_A=g_A, g_KCa=g_KCa, g_Kd=g_Kd, g_H=g_H, g_leak=g_leak
    )
    params = dict(g, E_Na=E_Na, E_K=E_K, E_H=E_H, E_leak=E_leak, C=C, tau_Ca=tau_Ca, Ca0=Ca0)
    info = {
        name: slider(
            value,
            0.0,
            max(2.0 * value, 1.0),
            **conductance,
            description=f"maximal conductance of {name[2:]}",
        )
        for name, value in g.items()
    }
    info.update(
        E_Na=slider(E_Na, 20.0, 80.0, unit="mV", description="sodium reversal potential"),
        E_K=slider(E_K, -100.0, -60.0, unit="mV", description="potassium reversal potential"),
        E_H=slider(E_H, -40.0, 0.0, unit="mV", description="H-current reversal potential"),
        E_leak=slider(E_leak, -80.0, -20.0, unit="mV", description="leak reversal potential"),
        C=slider(C, 0.5, 2.0, unit="µF/cm²", description="membrane capacitance"),
        tau_Ca=slider(
            tau_Ca, 20.0, 1000.0, log=True, unit="ms", description="calcium buffering time constant"
        ),
        Ca0=slider(Ca0, 0.01, 0.5, log=True, unit="µM", description="resting calcium"),
    )
    # on the bursting cycle, 36 ms before a burst of about 25 spikes (the cycle lasts ≈1.6 s)
    onset = [
        -48.06729,
        2.903261,
        0.01374998,
        0.4774673,
        0.04283413,
        0.9795278,
        0.09147498,
        0.4124377,
        0.06853396,
        0.2999778,
        0.06296874,
        0.04152318,
        0.04300737,
    ]
    return System(
        _bursting_field,
        states=STATES,
        params=params,
        y0=pick(y0, onset),
        t_span=pick(t_span, (0.0, 200.0)),
        name="bursting_neuron",
        param_info=info,
        description="Prinz et al.'s (2003) stomatogastric neuron: eight conductances and "
        "calcium, 13 states; spikes (≈1 ms) on slow calcium-driven bursts make it stiff.",
        # Stiff by its eigenvalue spread, yet the spikes, not stability, limit the step: measured
        # over 0..200 ms at rtol 1e-6, tsit5 took 1.7k steps (0.17 s) and kvaerno5 12k (4.4 s),
        # half of them rejected. So the explicit solver is the default.
        stiff=False,
    )


def voltage_fit_problem(
    *,
    t_end: float = 200.0,
    n_save: int = 401,
    data_rtol: float = 1e-12,
    system: System | None = None,
) -> tuple[Callable[[dict[str, Any]], Any], dict[str, float]]:
    """(loss, conductances): least squares on V against the neuron's own nominal trajectory.

    The data are the voltage of `system` (default `bursting_neuron()`) over 0..`t_end` ms at
    `n_save` points, solved at rtol=`data_rtol`. At the returned conductances the continuous loss
    is exactly zero, and so is its true gradient: whatever a gradient method reports there is
    numerical error. This is the function `odelab check` accepts directly:

        python -m odelab check odelab.gallery.bursting:voltage_fit_problem
    """
    system = bursting_neuron(t_span=(0.0, t_end)) if system is None else system
    # tight data take many steps: 0..200 ms at rtol 1e-12 needs ~20k (more than the default)
    data = solve(system, saveat=n_save, rtol=data_rtol, atol=data_rtol * 1e-2,
                 max_steps=1 << 20).ys[:, 0]
    scale = float(jnp.mean(data**2))

    def loss(conductances: dict[str, Any]) -> Any:
        v = solve(system, params=conductances, saveat=n_save).ys[:, 0]
        return jnp.mean((v - data) ** 2) / scale

    return loss, {name: float(system.params[name]) for name in CONDUCTANCES}
