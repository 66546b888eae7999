"""Classic non-stiff systems: closed-form toys, mechanics, populations, oscillators, chaos."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp

from ..system import System
from ._common import attach_exact, pick, slider


# -- closed forms ---------------------------------------------------------------------------------
def _decay_field(t: Any, y: Any, p: Any) -> Any:
    return -p["k"] * y


def _decay_exact(ts: Any, y0: Any, p: Any) -> Any:
    return y0[None, :] * jnp.exp(-p["k"] * ts)[:, None]


def exponential_decay(*, k: float = 0.5, y0: Any = None, t_span: Any = None) -> System:
    """y' = -k y, with the closed form y(t) = y0 exp(-k t) as ``system.exact(ts)``."""
    system = System(
        _decay_field,
        states=("y",),
        params=dict(k=k),
        y0=pick(y0, [1.0]),
        t_span=pick(t_span, (0.0, 10.0)),
        name="exponential_decay",
        param_info=dict(k=slider(k, 0.01, 10.0, log=True, unit="1/time", description="decay rate")),
        description="First-order decay y' = -k y (radioactive decay, first-order kinetics); the "
        "exact solution y0·exp(-k t) makes it the simplest check of a solver.",
        stiff=False,
    )
    return attach_exact(system, _decay_exact)


def _oscillator_field(t: Any, y: Any, p: Any) -> Any:
    x, v = y[0], y[1]
    return jnp.stack([v, -(p["omega"] ** 2) * x])


def _oscillator_exact(ts: Any, y0: Any, p: Any) -> Any:
    w = p["omega"]
    x = y0[0] * jnp.cos(w * ts) + y0[1] / w * jnp.sin(w * ts)
    v = -y0[0] * w * jnp.sin(w * ts) + y0[1] * jnp.cos(w * ts)
    return jnp.stack([x, v], axis=-1)


def harmonic_oscillator(*, omega: float = 1.0, y0: Any = None, t_span: Any = None) -> System:
    """x'' = -omega² x as x' = v, v' = -omega² x, with its closed form as ``system.exact(ts)``."""
    system = System(
        _oscillator_field,
        states=("x", "v"),
        params=dict(omega=omega),
        y0=pick(y0, [1.0, 0.0]),
        t_span=pick(t_span, (0.0, 4.0 * math.pi)),
        name="harmonic_oscillator",
        param_info=dict(
            omega=slider(
                omega, 0.1, 10.0, log=True, unit="rad/time", description="angular frequency"
            )
        ),
        description="The undamped harmonic oscillator x'' = -ω² x; energy ½v² + ½ω²x² is conserved "
        "and x(t) = x0 cos ωt + (v0/ω) sin ωt is known exactly.",
        stiff=False,
    )
    return attach_exact(system, _oscillator_exact)


# -- mechanics -------------------------------------------------------------------------------------
def _pendulum_field(t: Any, y: Any, p: Any) -> Any:
    theta, omega = y[0], y[1]
    return jnp.stack([omega, -p["g"] / p["length"] * jnp.sin(theta) - p["damping"] * omega])


def damped_pendulum(
    *,
    g: float = 9.81,
    length: float = 1.0,
    damping: float = 0.5,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """A pendulum with linear friction: theta'' = -(g/L) sin theta - c theta'."""
    return System(
        _pendulum_field,
        states=("theta", "omega"),
        params=dict(g=g, length=length, damping=damping),
        y0=pick(y0, [2.0, 0.0]),
        t_span=pick(t_span, (0.0, 20.0)),
        name="damped_pendulum",
        param_info=dict(
            g=slider(g, 1.0, 25.0, unit="m/s²", description="gravitational acceleration"),
            length=slider(length, 0.1, 10.0, log=True, unit="m", description="pendulum length"),
            damping=slider(damping, 0.0, 5.0, unit="1/s", description="friction coefficient c"),
        ),
        description="The nonlinear pendulum with linear friction, θ'' = -(g/L) sin θ - c θ' "
        "(Strogatz, Nonlinear Dynamics and Chaos, 1994, §6.7); the energy ½θ'² - (g/L) cos θ "
        "decays at rate c θ'².",
        stiff=False,
    )


# -- populations and epidemics ---------------------------------------------------------------------
def _lotka_volterra_field(t: Any, y: Any, p: Any) -> Any:
    x, z = y[0], y[1]
    return jnp.stack([p["alpha"] * x - p["beta"] * x * z, p["delta"] * x * z - p["gamma"] * z])


def lotka_volterra(
    *,
    alpha: float = 1.5,
    beta: float = 1.0,
    gamma: float = 3.0,
    delta: float = 1.0,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """Predator–prey: x' = alpha x - beta x y, y' = delta x y - gamma y."""
    rate = dict(log=True, unit="1/time")
    return System(
        _lotka_volterra_field,
        states=("x", "y"),
        params=dict(alpha=alpha, beta=beta, gamma=gamma, delta=delta),
        y0=pick(y0, [1.0, 1.0]),
        t_span=pick(t_span, (0.0, 10.0)),
        name="lotka_volterra",
        param_info=dict(
            alpha=slider(alpha, 0.1, 5.0, **rate, description="prey growth rate"),
            beta=slider(beta, 0.1, 5.0, **rate, description="predation rate"),
            gamma=slider(gamma, 0.1, 5.0, **rate, description="predator death rate"),
            delta=slider(delta, 0.1, 5.0, **rate, description="predator growth per prey eaten"),
        ),
        description="The predator–prey model of Lotka (1925) and Volterra (1926): prey x grow, "
        "predators y eat them; orbits are closed, δx - γ ln x + βy - α ln y is conserved.",
        stiff=False,
    )


def _sir_field(t: Any, y: Any, p: Any) -> Any:
    s, i, r = y[0], y[1], y[2]
    infections = p["beta"] * s * i / (s + i + r)
    recoveries = p["gamma"] * i
    return jnp.stack([-infections, infections - recoveries, recoveries])


def sir(*, beta: float = 0.3, gamma: float = 0.1, y0: Any = None, t_span: Any = None) -> System:
    """The SIR epidemic: S' = -beta S I / N, I' = beta S I / N - gamma I, R' = gamma I."""
    return System(
        _sir_field,
        states=("S", "I", "R"),
        params=dict(beta=beta, gamma=gamma),
        y0=pick(y0, [0.99, 0.01, 0.0]),
        t_span=pick(t_span, (0.0, 160.0)),
        name="sir",
        param_info=dict(
            beta=slider(beta, 0.01, 2.0, log=True, unit="1/day", description="contact rate"),
            gamma=slider(gamma, 0.01, 1.0, log=True, unit="1/day", description="recovery rate"),
        ),
        description="The susceptible–infected–recovered epidemic of Kermack and McKendrick "
        "(1927); the population N = S + I + R is conserved and R0 = β/γ.",
        stiff=False,
    )


# -- oscillators and chaos -------------------------------------------------------------------------
def _van_der_pol_field(t: Any, y: Any, p: Any) -> Any:
    x, v = y[0], y[1]
    return jnp.stack([v, p["mu"] * (1.0 - x**2) * v - x])


def van_der_pol(
    mu: float = 1.0, *, y0: Any = None, t_span: Any = None, name: str = "van_der_pol"
) -> System:
    """The Van der Pol oscillator x' = y, y' = mu (1 - x²) y - x; stiff for large mu."""
    # The relaxation period grows like (3 - 2 ln 2) mu; 3 mu shows about two cycles.
    return System(
        _van_der_pol_field,
        states=("x", "y"),
        params=dict(mu=mu),
        y0=pick(y0, [2.0, 0.0]),
        t_span=pick(t_span, (0.0, max(20.0, 3.0 * mu))),
        name=name,
        param_info=dict(
            mu=slider(mu, 0.1, 1000.0, log=True, description="nonlinear damping strength")
        ),
        description="The Van der Pol (1926) relaxation oscillator; mild for μ ≈ 1, increasingly "
        "stiff as μ grows (Hairer & Wanner, Solving ODEs II, §IV.1).",
        stiff=mu >= 100.0,
    )


def van_der_pol_stiff(mu: float = 1000.0, *, y0: Any = None, t_span: Any = None) -> System:
    """The Van der Pol oscillator at mu = 1000 over (0, 3000): a classic stiff test."""
    system = van_der_pol(mu, y0=y0, t_span=t_span, name="van_der_pol_stiff")
    return system.replace(
        description="The Van der Pol oscillator at μ = 1000, the 'vdp1000' test of Shampine and "
        "Reichelt's MATLAB ODE suite (1997): slow drift with sharp jumps, a standard stiff "
        "benchmark.",
        stiff=True,
    )


def _brusselator_field(t: Any, y: Any, p: Any) -> Any:
    x, z = y[0], y[1]
    return jnp.stack([p["a"] + x**2 * z - (p["b"] + 1.0) * x, p["b"] * x - x**2 * z])


def brusselator(*, a: float = 1.0, b: float = 3.0, y0: Any = None, t_span: Any = None) -> System:
    """The Brusselator: x' = a + x² y - (b + 1) x, y' = b x - x² y."""
    return System(
        _brusselator_field,
        states=("x", "y"),
        params=dict(a=a, b=b),
        y0=pick(y0, [1.5, 3.0]),
        t_span=pick(t_span, (0.0, 20.0)),
        name="brusselator",
        param_info=dict(
            a=slider(a, 0.1, 5.0, log=True, description="feed concentration A"),
            b=slider(b, 0.1, 10.0, log=True, description="feed concentration B"),
        ),
        description="The Brusselator autocatalytic reaction of Prigogine and Lefever (1968); a "
        "limit cycle appears when b > 1 + a².",
        stiff=False,
    )


def _fitzhugh_nagumo_field(t: Any, y: Any, p: Any) -> Any:
    v, w = y[0], y[1]
    return jnp.stack([v - v**3 / 3.0 - w + p["current"], (v + p["a"] - p["b"] * w) / p["tau"]])


def fitzhugh_nagumo(
    *,
    a: float = 0.7,
    b: float = 0.8,
    tau: float = 12.5,
    current: float = 0.5,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """FitzHugh–Nagumo: v' = v - v³/3 - w + I, w' = (v + a - b w) / tau."""
    return System(
        _fitzhugh_nagumo_field,
        states=("v", "w"),
        params=dict(a=a, b=b, tau=tau, current=current),
        y0=pick(y0, [-1.0, 1.0]),
        t_span=pick(t_span, (0.0, 200.0)),
        name="fitzhugh_nagumo",
        param_info=dict(
            a=slider(a, 0.0, 2.0, description="recovery offset"),
            b=slider(b, 0.0, 2.0, description="recovery feedback"),
            tau=slider(tau, 1.0, 100.0, log=True, unit="time", description="recovery time scale"),
            current=slider(current, 0.0, 2.0, description="external stimulus current I"),
        ),
        description="The FitzHugh (1961) – Nagumo (1962) model of a spiking neuron, a "
        "two-variable reduction of Hodgkin–Huxley; it fires periodically for moderate I.",
        stiff=False,
    )


def _lorenz_field(t: Any, y: Any, p: Any) -> Any:
    x, z1, z2 = y[0], y[1], y[2]
    return jnp.stack([p["sigma"] * (z1 - x), x * (p["rho"] - z2) - z1, x * z1 - p["beta"] * z2])


def lorenz(
    *,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    y0: Any = None,
    t_span: Any = None,
) -> System:
    """The Lorenz system x' = sigma (y - x), y' = x (rho - z) - y, z' = x y - beta z."""
    return System(
        _lorenz_field,
        states=("x", "y", "z"),
        params=dict(sigma=sigma, rho=rho, beta=beta),
        y0=pick(y0, [1.0, 1.0, 1.0]),
        t_span=pick(t_span, (0.0, 20.0)),
        name="lorenz",
        param_info=dict(
            sigma=slider(sigma, 0.1, 50.0, description="Prandtl number σ"),
            rho=slider(rho, 0.1, 100.0, description="Rayleigh number ρ (chaos above ≈ 24.7)"),
            beta=slider(beta, 0.1, 10.0, description="geometric factor β"),
        ),
        description="Lorenz's (1963) convection model, the classic strange attractor: chaotic "
        "for σ = 10, ρ = 28, β = 8/3, so gradients over long horizons explode.",
        stiff=False,
    )
