"""The `odelab` command line.

    odelab check MODULE:FUNCTION [options]   gradient check for your CI (exit 1 unless accurate)
    odelab serve MODULE:OBJECT [options]     the explorer as a standalone page (classroom projector)
    odelab info                              versions, devices, float64, the compilation cache
"""

from __future__ import annotations

import sys

USAGE = __doc__


def _info() -> int:
    import diffrax
    import equinox
    import jax

    import odelab
    from odelab._config import cache_dir

    print(f"odelab {odelab.__version__}")
    print(f"jax {jax.__version__}, diffrax {diffrax.__version__}, equinox {equinox.__version__}")
    print(f"backend {jax.default_backend()}: {', '.join(str(d) for d in jax.devices())}")
    print(f"float64 {'on' if jax.config.jax_enable_x64 else 'off'}")
    print(f"compilation cache {cache_dir() or 'off'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "check":
        from odelab._check import cli_check

        return cli_check(rest)
    if command == "serve":
        from odelab.ui.serve import cli_serve

        return cli_serve(rest)
    if command == "info":
        return _info()
    print(f"odelab: unknown command {command!r}.\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
