"""Filling JAX's persistent compilation cache ahead of time: `odelab warm`.

An explorer's first frame of a system compiles its programs (trajectory, phase plane, gradient
and the reference gradient of the Gradient tab); a kernel that finds them in the persistent
cache loads them instead. `warm()` builds the first frame of each gallery system's explorer,
with the settings `ol.explore(system)` starts with, plus the explorers the tutorials open on
gallery systems, so those programs are in the cache before anyone asks. Binder's
`postBuild` runs it inside the image.

Every program is written to the cache (odelab stores even those that compile in
milliseconds), so a later first frame of the same explorer compiles nothing at all. The cache
is the one `ODELAB_CACHE_DIR` names (default ``~/.cache/odelab/jax``); programs are stored for
this JAX version, this CPU's target and these `XLA_FLAGS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jax

from .._compilations import cache_hit_count, compile_count
from .._config import cache_dir, cached_program_count
from .._errors import InputError, OdelabError, closest
from ..gallery import GALLERY
from .explorer import Explorer

# Explorers the tutorials open on gallery systems, with the settings they pass.
TUTORIAL_EXPLORERS: dict[str, tuple[str, dict[str, Any]]] = {
    "09_classroom_phase_planes": ("brusselator", {"compute_gradient": False, "n_save": 400}),
}


@dataclass(frozen=True)
class Warmed:
    """One explorer's first frame: how many programs it asked for, how many came from the
    cache, and how long it took."""

    name: str
    programs: int
    from_cache: int
    seconds: float

    @property
    def compiled(self) -> int:
        return self.programs - self.from_cache


def _gallery_name(name: str) -> str:
    if name not in GALLERY:
        raise InputError(f"`{name}` is not a gallery system.{closest(name, GALLERY)} "
                         f"Choose from: {', '.join(sorted(GALLERY))}.")
    return name


def first_frame(system_name: str, **settings: Any) -> Warmed:
    """Build the first frame of the explorer of gallery system `system_name` (all four views)."""
    _gallery_name(system_name)
    programs, hits, start = compile_count(), cache_hit_count(), time.perf_counter()
    from . import explore  # as a user opens it, so the settings (and programs) are the same

    # the Gradient tab in front: its reference gradient is computed too
    explorer: Explorer = explore(GALLERY[system_name](), view="Gradient", **settings)
    try:
        explorer.refresh()
        explorer.wait()
        if explorer.status_level in ("warning", "danger"):
            raise OdelabError(f"warming {system_name!r}: {explorer.status}")
    finally:
        explorer.close()
    return Warmed(system_name, compile_count() - programs, cache_hit_count() - hits,
                  time.perf_counter() - start)


def plan(systems: Sequence[str] | None = None, tutorials: bool = True
         ) -> list[tuple[str, str, dict[str, Any]]]:
    """What `warm` builds: (label, gallery system, explorer settings) in order."""
    names = [_gallery_name(name) for name in systems] if systems else sorted(GALLERY)
    jobs = [(name, name, {}) for name in names]
    if tutorials:
        jobs += [(f"{name} ({tutorial})", name, settings)
                 for tutorial, (name, settings) in TUTORIAL_EXPLORERS.items()
                 if systems is None or name in names]
    return jobs


def _print(line: str) -> None:
    print(line, flush=True)


def warm(systems: Sequence[str] | None = None, *, tutorials: bool = True,
         out: Callable[[str], Any] | None = _print) -> list[Warmed]:
    """Fill the persistent compilation cache with the explorers' first-frame programs.

    systems: gallery names (default: every gallery system); tutorials: also the explorers the
    tutorials open on those systems. Prints one line per explorer to `out` (None: silent). An
    explorer that fails is reported and skipped; `OdelabError` at the end names those that
    failed. Raises `OdelabError` at once when the cache is off (``ODELAB_CACHE_DIR=off``).
    """
    jobs = plan(systems, tutorials)  # the names first: a typo is named whatever the cache
    target = cache_dir()
    if target is None or not jax.config.jax_compilation_cache_dir:
        raise OdelabError("The compilation cache is off (ODELAB_CACHE_DIR=off), so there is "
                          "nothing to warm. Unset ODELAB_CACHE_DIR or point it at a directory.")
    say = out or (lambda _: None)
    say(f"odelab warm: {len(jobs)} explorer first frames into {target}")
    done, failed, start = [], [], time.perf_counter()
    for k, (label, name, settings) in enumerate(jobs, 1):
        try:
            w = first_frame(name, **settings)
        except Exception as err:  # one system's failure does not keep the others cold
            failed.append(label)
            say(f"[{k}/{len(jobs)}] {label}: FAILED: {type(err).__name__}: {err}")
            continue
        done.append(Warmed(label, w.programs, w.from_cache, w.seconds))
        say(f"[{k}/{len(jobs)}] {label}: {w.programs} programs, {w.compiled} compiled, "
            f"{w.from_cache} from the cache, {w.seconds:.1f} s")
    say(f"odelab warm: done in {time.perf_counter() - start:.0f} s; "
        f"{cached_program_count(target)} programs in {target}")
    if failed:
        raise OdelabError(f"warming failed for {', '.join(failed)} (see above); the others are "
                          "in the cache.")
    return done


def cli_warm(argv: Iterable[str]) -> int:
    """`odelab warm [SYSTEM ...] [--no-tutorials]`; returns the exit code."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="odelab warm",
        description="Compile the first frame of the explorers of gallery systems into the "
                    "persistent compilation cache (ODELAB_CACHE_DIR), so a new kernel's first "
                    "explorer of those systems loads its programs instead of compiling them.")
    parser.add_argument("systems", nargs="*", metavar="SYSTEM",
                        help="gallery system names (default: all of them)")
    parser.add_argument("--no-tutorials", action="store_true",
                        help="skip the explorers the tutorials open with their own settings")
    args = parser.parse_args(list(argv))
    try:
        warm(args.systems or None, tutorials=not args.no_tutorials)
    except InputError as err:
        print(f"odelab warm: {err}", flush=True)
        return 2
    except OdelabError as err:
        print(f"odelab warm: {err}", flush=True)
        return 1
    return 0
