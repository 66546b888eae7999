"""The persistent compilation cache across processes: a second kernel compiles (nearly) nothing.

The test processes themselves do not use the cache (conftest.py), so every check runs in fresh
Python processes that import this checkout's odelab and share a cache directory. What is
compared is counted, not timed: the programs a first frame asks JAX for
(`ol.compile_count()`) and how many of those JAX loaded from the cache (`ol.cache_hit_count()`).
Lotka–Volterra with few save points keeps each process short.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

import odelab as ol

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

ORDERS = {
    "odelab first": "import odelab as ol\nimport diffrax\nimport equinox\n",
    "diffrax first": "import diffrax\nimport equinox\nimport odelab as ol\n",
}

FIRST_FRAME = """
import json
c0, h0 = ol.compile_count(), ol.cache_hit_count()
ex = ol.explore(ol.gallery.lotka_volterra(), view="Gradient")
ex.refresh()
ex.wait()
assert ex.status_level == "success", ex.status
done = {k: v["state"] for k, v in ex.stage_status.items()}
assert done == dict.fromkeys(["trajectory", "phase", "gradient", "reference"], "done"), done
programs, hits = ol.compile_count() - c0, ol.cache_hit_count() - h0
print(json.dumps({"programs": programs, "compiled": programs - hits}))
"""


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "ODELAB_CACHE_DIR": str(cache), "ODELAB_CACHE_MIN_COMPILE_S": "0",
            "PANEL_INLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def first_frame(cache: Path, order: str = "odelab first") -> dict:
    """The explorer's first frame of Lotka–Volterra (all four views) in a fresh process."""
    done = subprocess.run([sys.executable, "-c", ORDERS[order] + FIRST_FRAME], cwd=REPO,
                          env=_env(cache), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def warmed(tmp_path_factory) -> tuple[Path, str]:
    """One `odelab warm lotka_volterra` into a fresh cache, shared by the tests below."""
    cache = tmp_path_factory.mktemp("warmed") / "jax"
    done = subprocess.run([sys.executable, "-m", "odelab", "warm", "lotka_volterra"], cwd=REPO,
                          env=_env(cache), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return cache, done.stdout


def test_warm_fills_the_cache_and_reports_progress(warmed):
    cache, out = warmed
    assert "odelab warm: 1 explorer first frames into" in out, out
    line = r"\[1/1\] lotka_volterra: \d+ programs, \d+ compiled, 0 from the cache"
    assert re.search(line, out), out
    assert len(list(cache.iterdir())) >= 5


def test_after_warm_a_new_first_frame_compiles_nothing(warmed):
    # the warm-up built the first frame in a process that imported odelab first: a fresh one
    # asks for the same programs and finds every one of them in the cache
    frame = first_frame(warmed[0], "odelab first")
    warmed_programs = int(re.search(r"lotka_volterra: (\d+) programs", warmed[1]).group(1))
    assert frame["programs"] == warmed_programs >= 5, (frame, warmed[1])
    assert frame["compiled"] <= 1, frame


def test_with_diffrax_imported_first_a_second_process_compiles_nothing(tmp_path):
    cold = first_frame(tmp_path / "jax", "diffrax first")
    warm = first_frame(tmp_path / "jax", "diffrax first")
    assert cold["compiled"] >= 5, cold  # the first process compiles the frame's programs...
    assert warm["programs"] == cold["programs"], (cold, warm)  # ...the second asks for the same
    assert warm["compiled"] <= 1, f"the second process compiled {warm} again"


def test_warm_refuses_unknown_systems_and_a_disabled_cache(monkeypatch):
    from odelab.ui import warm

    with pytest.raises(ol.InputError, match="Did you mean 'lorenz'"):
        warm.warm(["lorentz"], out=None)
    monkeypatch.setenv("ODELAB_CACHE_DIR", "off")
    with pytest.raises(ol.OdelabError, match="cache is off"):
        warm.warm(["lorenz"], out=None)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")
def test_cpu_programs_are_capped_at_avx2_so_the_cache_loads_them_on_avx512_hosts():
    # set when odelab was imported (conftest.py), before JAX created its CPU backend
    assert "--xla_cpu_max_isa=" in os.environ.get("XLA_FLAGS", "")


def test_the_minimum_compile_time_to_cache_is_a_setting(monkeypatch):
    from odelab import _config

    monkeypatch.delenv("ODELAB_CACHE_MIN_COMPILE_S", raising=False)
    assert _config._min_compile_seconds() == 0.0  # by default every program is cached
    monkeypatch.setenv("ODELAB_CACHE_MIN_COMPILE_S", "1.5")
    assert _config._min_compile_seconds() == 1.5
    for bad in ("-1", "soon", "nan", "inf"):
        monkeypatch.setenv("ODELAB_CACHE_MIN_COMPILE_S", bad)
        with pytest.raises(ol.InputError, match="ODELAB_CACHE_MIN_COMPILE_S"):
            _config._min_compile_seconds()
