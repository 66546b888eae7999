"""Classic stiff test problems with their published reference solutions.

Reference values are from the IVP test set of Mazzia & Magherini (Bari) and Hairer–Wanner,
computed there with RADAU5 in quadruple precision. Each problem is a plain
`f(t, y, args) -> dy/dt` in jax.numpy, usable with `diffrax.ODETerm`, plus a NumPy twin for
scipy. Used by odelab's tests and its work-precision benchmark.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class StiffProblem:
    """One test problem: the field (JAX and NumPy), y0, the interval and y(t1)."""

    name: str
    field: Callable  # f(t, y, args) with jax.numpy
    field_np: Callable  # f(t, y) with numpy, for scipy
    y0: tuple[float, ...]
    t1: float
    reference: tuple[float, ...]
    atol_scale: tuple[float, ...]  # a per-component size for absolute tolerances
    dt0: float = 1e-6


def _hires(xp):
    def f(t, y, args=None):
        y1, y2, y3, y4, y5, y6, y7, y8 = (y[i] for i in range(8))
        reaction = 280.0 * y6 * y8
        return xp.stack([
            -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
            1.71 * y1 - 8.75 * y2,
            -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
            8.32 * y2 + 1.71 * y3 - 1.12 * y4,
            -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
            -reaction + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
            reaction - 1.81 * y7,
            -reaction + 1.81 * y7,
        ])

    return f


def _van_der_pol(xp, eps=1e-6):
    def f(t, y, args=None):
        return xp.stack([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / eps])

    return f


def _robertson(xp):
    def f(t, y, args=None):
        slow, fast, quench = 0.04 * y[0], 1e4 * y[1] * y[2], 3e7 * y[1] ** 2
        return xp.stack([-slow + fast, slow - fast - quench, quench])

    return f


def _oregonator(xp):
    def f(t, y, args=None):
        return xp.stack([
            77.27 * (y[1] + y[0] * (1 - 8.375e-6 * y[0] - y[1])),
            (y[2] - (1 + y[0]) * y[1]) / 77.27,
            0.161 * (y[0] - y[2]),
        ])

    return f


# Verwer's air pollution model (20 species, 25 reactions): (rate constant, the species whose
# concentrations multiply into the rate (1-based), the net change of each species).
_POLLUTION_REACTIONS = [
    (0.35, (1,), {1: -1, 2: 1, 3: 1}),
    (26.6, (2, 4), {1: 1, 2: -1, 4: -1}),
    (1.23e4, (5, 2), {1: 1, 2: -1, 5: -1, 6: 1}),
    (8.6e-4, (7,), {5: 2, 7: -1, 8: 1}),
    (8.2e-4, (7,), {7: -1, 8: 1}),
    (1.5e4, (7, 6), {5: 1, 6: -1, 7: -1, 8: 1}),
    (1.3e-4, (9,), {5: 1, 8: 1, 9: -1, 10: 1}),
    (2.4e4, (9, 6), {6: -1, 9: -1, 11: 1}),
    (1.65e4, (11, 2), {1: 1, 2: -1, 10: 1, 11: -1, 12: 1}),
    (9.0e3, (11, 1), {1: -1, 11: -1, 13: 1}),
    (0.022, (13,), {1: 1, 11: 1, 13: -1}),
    (1.2e4, (10, 2), {1: 1, 2: -1, 10: -1, 14: 1}),
    (1.88, (14,), {5: 1, 7: 1, 14: -1}),
    (1.63e4, (1, 6), {1: -1, 6: -1, 15: 1}),
    (4.8e6, (3,), {3: -1, 4: 1}),
    (3.5e-4, (4,), {4: -1, 16: 1}),
    (0.0175, (4,), {3: 1, 4: -1}),
    (1.0e8, (16,), {6: 2, 16: -1}),
    (4.44e11, (16,), {3: 1, 16: -1}),
    (1240.0, (17, 6), {5: 1, 6: -1, 17: -1, 18: 1}),
    (2.1, (19,), {2: 1, 19: -1}),
    (5.78, (19,), {1: 1, 3: 1, 19: -1}),
    (0.0474, (1, 4), {1: -1, 4: -1, 19: 1}),
    (1780.0, (19, 1), {1: -1, 19: -1, 20: 1}),
    (3.12, (20,), {1: 1, 19: 1, 20: -1}),
]


def _pollution(xp):
    rates = np.array([k for k, _, _ in _POLLUTION_REACTIONS])
    # Reactant indices padded with 20, which points at an appended 1.0 (first-order reactions).
    reactants = np.array([(r + (21,))[:2] for _, r, _ in _POLLUTION_REACTIONS]) - 1
    stoichiometry = np.zeros((20, len(_POLLUTION_REACTIONS)))
    for j, (_, _, changes) in enumerate(_POLLUTION_REACTIONS):
        for species, change in changes.items():
            stoichiometry[species - 1, j] = change

    def f(t, y, args=None):
        padded = xp.concatenate([y, xp.ones(1, dtype=y.dtype)])
        return stoichiometry @ (rates * padded[reactants[:, 0]] * padded[reactants[:, 1]])

    return f


def _problem(name, make, y0, t1, reference, atol_scale, dt0=1e-6):
    return StiffProblem(name, make(jnp), make(np), tuple(y0), t1, tuple(reference),
                        tuple(atol_scale), dt0)


PROBLEMS: dict[str, StiffProblem] = {
    p.name: p
    for p in [
        _problem(
            "hires", _hires, [1, 0, 0, 0, 0, 0, 0, 0.0057], 321.8122,
            [0.7371312573325668e-3, 0.1442485726316185e-3, 0.5888729740967575e-4,
             0.1175651343283149e-2, 0.2386356198831331e-2, 0.6238968252742796e-2,
             0.2849998395185769e-2, 0.2850001604814231e-2],
            [1e-3] * 8,
        ),
        # The test set states vdpol with μ = 1000 on [0, 2000]; with t = 1000 s and
        # ε = 1/μ² this is the same solution, y2 scaled by 1000.
        _problem(
            "van_der_pol", _van_der_pol, [2.0, 0.0], 2.0,
            [0.1706167732170469e1, -0.8928097010248125],
            [1.0, 1.0],
        ),
        _problem(
            "robertson", _robertson, [1.0, 0.0, 0.0], 1e11,
            [0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050],
            [1e-8, 1e-14, 1.0],
        ),
        _problem(
            "oregonator", _oregonator, [1.0, 2.0, 3.0], 360.0,
            [0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3],
            [1.0, 1.0, 1.0],
        ),
        _problem(
            "pollution", _pollution,
            [0, 0.2, 0, 0.04, 0, 0, 0.1, 0.3, 0.01, 0, 0, 0, 0, 0, 0, 0, 0.007, 0, 0, 0], 60.0,
            [0.5646255480022769e-1, 0.1342484130422339, 0.4139734331099427e-8,
             0.5523140207484359e-2, 0.2018977262302196e-6, 0.1464541863493966e-6,
             0.7784249118997964e-1, 0.3245075353396018, 0.7494013383880406e-2,
             0.1622293157301561e-7, 0.1135863833257075e-7, 0.2230505975721359e-2,
             0.2087162882798630e-3, 0.1396921016840158e-4, 0.8964884856898295e-2,
             0.4352846369330103e-17, 0.6899219696263405e-2, 0.1007803037365946e-3,
             0.1772146513969984e-5, 0.5682943292316392e-4],
            [1e-3] * 15 + [1e-17] + [1e-3] * 4,
        ),
    ]
}


def relative_error(y, reference, floor=0.0):
    """max_i |y_i − ref_i| / max(|ref_i|, floor): the test set's accuracy measure."""
    y, reference = np.asarray(y), np.asarray(reference)
    return float(np.max(np.abs(y - reference) / np.maximum(np.abs(reference), floor)))
