"""The `odelab` command line.

    odelab check MODULE:FUNCTION [options]   gradient check for your CI (exit 1 unless accurate)
    odelab serve MODULE:OBJECT [options]     the explorer as a standalone page (classroom projector)
    odelab info                              versions, devices, float64, the compilation cache
    odelab warm [SYSTEM ...]                 compile the gallery explorers into that cache
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

import diffrax
import equinox
import jax

from . import __version__
from ._config import cache_dir, cached_program_count
from ._errors import InputError
from .analysis.check import GradientReport, check_gradient

USAGE = __doc__


def _short(err: Exception) -> str:
    """The error's type and the first line of its message."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:300]}"


def _info() -> int:
    print(f"odelab {__version__}")
    print(f"jax {jax.__version__}, diffrax {diffrax.__version__}, equinox {equinox.__version__}")
    print(f"backend {jax.default_backend()}: {', '.join(str(d) for d in jax.devices())}")
    print(f"float64 {'on' if jax.config.jax_enable_x64 else 'off'}")
    where = cache_dir()
    stored = cached_program_count(where)
    print(f"compilation cache {f'{where} ({stored} programs)' if where else 'off'}"
          f"{'; fill it with `odelab warm`' if where and not stored else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "check":
        return cli_check(rest)
    if command == "serve":
        from .ui.serve import cli_serve  # Panel loads only for this command

        return cli_serve(rest)
    if command == "info":
        return _info()
    if command == "warm":
        from .ui.warm import cli_warm  # Panel loads only for this command

        return cli_warm(rest)
    print(f"odelab: unknown command {command!r}.\n{USAGE}", file=sys.stderr)
    return 2


CLI_HELP = """Check the gradient of a loss function through its ODE solves.

MODULE:FUNCTION names either
  * with --params: the loss itself, fun(params) -> scalar, and --params MODULE:NAME names the
    parameters (a value, or a function without arguments returning them); or
  * without --params: a function without arguments returning a GradientReport (printed as it
    is) or a (fun, params) pair, which is then checked.
Exit status: 0 when every method checked is accurate, 1 when not, 2 on usage errors.
"""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors return 2 instead of exiting the process
        raise _UsageError(f"{self.format_usage()}odelab check: error: {message}")


def _load(spec: str, what: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _UsageError(f"{what} must look like MODULE:NAME (e.g. mymodels:loss); got {spec!r}.")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise _UsageError(f"cannot import module {module_name!r}: {_short(err)}") from err
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise _UsageError(f"module {module_name!r} has no attribute {attr!r}.")
        obj = getattr(obj, part)
    return obj


def cli_check(argv: Sequence[str] | None = None) -> int:
    """`odelab check MODULE:FUNCTION [--params MODULE:NAME] [--json] ...`; returns the exit code.

    `argv` are the arguments after `check`. See CLI_HELP for what FUNCTION may return.
    """
    parser = _Parser(prog="odelab check", description=CLI_HELP,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", metavar="MODULE:FUNCTION")
    parser.add_argument("--params", metavar="MODULE:NAME")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--methods", help="comma-separated method names, e.g. checkpoint,forward")
    parser.add_argument("--rtols", help="comma-separated tolerances, e.g. 1e-4,1e-6,1e-8")
    parser.add_argument("--solver", help="comma-separated solver names to compare")
    parser.add_argument("--accuracy", type=float, default=1e-4)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="step budget of the solves during the check")
    parser.add_argument("--no-diagnose", action="store_true", help="skip measuring the solves")
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if "" not in sys.path:
            sys.path.insert(0, "")  # MODULE may live in the current directory
        target = _load(args.target, "MODULE:FUNCTION")
        if not callable(target):
            raise _UsageError(f"{args.target} is not a function.")
        options = dict(
            methods=args.methods.split(",") if args.methods else None,
            rtols=[float(x) for x in args.rtols.split(",")] if args.rtols else None,
            solver=args.solver.split(",") if args.solver else None,
            accuracy=args.accuracy, diagnose=not args.no_diagnose, max_steps=args.max_steps,
        )
        if args.params:
            params = _load(args.params, "--params")
            params = params() if callable(params) else params
            report = check_gradient(target, params, **options)
        else:
            made = target()
            if isinstance(made, GradientReport):
                report = made
            elif isinstance(made, tuple) and len(made) == 2 and callable(made[0]):
                report = check_gradient(made[0], made[1], **options)
            else:
                raise _UsageError(
                    f"{args.target}() returned {type(made).__name__}; without --params it must "
                    "return a GradientReport or a (fun, params) pair."
                )
    except _UsageError as err:
        print(str(err), file=sys.stderr)
        return 2
    except (InputError, ValueError) as err:
        print(f"odelab check: {_short(err)}", file=sys.stderr)
        return 2
    print(report.to_json(indent=2) if args.json else str(report))
    return 0 if report.ok else 1
