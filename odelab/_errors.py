"""The errors odelab raises. Every message names the argument at fault and the way out."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OdelabError(Exception):
    """Base class of every error odelab raises for a user mistake or a failed computation."""


class InputError(OdelabError, ValueError):
    """An argument has the wrong value, shape, type or name."""


class VectorFieldError(OdelabError):
    """The system's vector field misbehaves (raises, returns the wrong shape or dtype)."""


class EquationError(OdelabError, ValueError):
    """Equation text could not be parsed, or uses something the safe parser does not allow."""


class SolveError(OdelabError, RuntimeError):
    """A solve failed (max_steps reached, the state blew up, the step size collapsed)."""


class MethodError(OdelabError):
    """A gradient method was asked for a derivative it cannot give."""


class MethodNotApplicableError(MethodError):
    """A gradient method does not apply to the kind of system solved (ODE or delay equation)."""


def closest(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' suffix naming the closest of `choices`, or an empty string."""
    match = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


def unknown_name(argument: str, name: str, choices: Iterable[str]) -> InputError:
    """The error for a name that is not one of `choices`, with the closest suggested."""
    choices = list(choices)
    return InputError(
        f"`{argument}={name!r}` is not known.{closest(name, choices)} "
        f"Choose one of: {', '.join(map(repr, choices))}."
    )
