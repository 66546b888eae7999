"""Classic ODE systems with good defaults, slider ranges and references.

Each function returns an `odelab.System`; keyword arguments override parameters, `y0` and
`t_span`:

    >>> import odelab as ol
    >>> sys = ol.gallery.lorenz(rho=28.0)
    >>> ol.gallery.names()[:3]
    ['brusselator', 'damped_pendulum', 'exponential_decay']

`exponential_decay` and `harmonic_oscillator` also carry their closed-form solution as
``system.exact(ts, y0=None, params=None)``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..system import System
from ._classic import (
    brusselator,
    damped_pendulum,
    exponential_decay,
    fitzhugh_nagumo,
    harmonic_oscillator,
    lorenz,
    lotka_volterra,
    sir,
    van_der_pol,
    van_der_pol_stiff,
)
from ._networks import hamiltonian_network, neural_ode
from ._neuro import hodgkin_huxley
from ._stiff import hires, oregonator, robertson
from .bursting import bursting_neuron

GALLERY: dict[str, Callable[..., System]] = {
    f.__name__: f
    for f in (
        exponential_decay,
        harmonic_oscillator,
        damped_pendulum,
        lotka_volterra,
        sir,
        van_der_pol,
        van_der_pol_stiff,
        brusselator,
        fitzhugh_nagumo,
        hodgkin_huxley,
        bursting_neuron,
        lorenz,
        robertson,
        oregonator,
        hires,
        neural_ode,
        hamiltonian_network,
    )
}
"""Every gallery system by name: ``GALLERY["lorenz"]()`` builds the Lorenz system."""


def names() -> list[str]:
    """The names of the gallery systems, sorted."""
    return sorted(GALLERY)


__all__ = [*GALLERY, "GALLERY", "names"]
