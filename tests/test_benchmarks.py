"""A short smoke run of the benchmark suite: it runs, and reports measured ratios."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest

BENCH = Path(__file__).parent.parent / "benchmarks"


def test_every_benchmark_module_has_a_run_function():
    sys.path.insert(0, str(BENCH))
    try:
        runner = importlib.import_module("run")
        for name in runner.SUITE:
            if name == "bench_torch" or not (BENCH / f"{name}.py").exists():
                continue
            module = importlib.import_module(name)
            assert callable(module.run), name
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.slow
def test_quick_run_writes_a_report(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    subprocess.run([sys.executable, str(BENCH / "run.py"), "--quick", "--only",
                    "bench_solve,bench_scipy", "--output", str(out)], check=True, timeout=900)
    text = out.read_text()
    assert "## bench_solve" in text and "## bench_scipy" in text
    assert "solve inside jax.jit vs diffrax" in text and "eager ol.solve vs jitted diffrax" in text
    assert "cold vs warm" in text and "import odelab vs import diffrax" in text
    # the targets the issues set, each with its measured value and whether it was met
    targets = text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    assert "solve inside jax.jit vs diffrax" in targets and "target < 5%" in targets
    assert all(line.endswith(("| yes |", "| NO |")) for line in targets.splitlines()
               if line.startswith("| ") and "target" in line and "measurement" not in line)
    assert "Traceback" not in text
    # the devices it ran on, with platform and kind (a GPU machine's report names its GPU)
    first = jax.devices()[0]
    assert f"- JAX devices: {first} (platform {first.platform}, kind {first.device_kind})" in text
    # figures drawn from the same rows, embedded with paths relative to the report
    figures = re.findall(r"!\[[^\]]+\]\(([^)\s]+\.png)\)", text)
    assert figures, "the report embeds no figure"
    for ref in figures:
        png = out.parent / ref
        assert png.is_file(), ref
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, ref


def test_update_replaces_only_the_sections_run_again():
    sys.path.insert(0, str(BENCH))
    try:
        runner = importlib.import_module("run")
    finally:
        sys.path.remove(str(BENCH))
    old = "\n".join([
        "# odelab benchmarks", "", "- date: old", "",
        "## Targets", "", "| measurement | value | target | met |", "|---|---|---|---|",
        "| solve vs diffrax | 1.02 | target < 5% | yes |",
        "| lorenz · slider | 40 ms | target median ≤ 30 ms | NO |", "",
        "## bench_solve: solves", "", "| benchmark | ratio |", "|---|---|",
        "| solve vs diffrax | 1.02 |", "",
        "## bench_ui: latency", "", "| problem | what |", "|---|---|", "| lorenz | slider |", ""])
    new = ["# odelab benchmarks", "", "- date: new", "",
           "## Targets", "", "| measurement | value | target | met |", "|---|---|---|---|",
           "| lorenz · slider | 25 ms | target median ≤ 30 ms | yes |", "",
           "## bench_ui: latency", "", "| problem | what |", "|---|---|", "| lorenz | slider |",
           "(25 s)", ""]
    merged = runner._merged(old, new, ["bench_ui"], "2026-12-02T15:00:00")
    text = "\n".join(merged)
    targets = text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    assert "| solve vs diffrax | 1.02 |" in targets  # kept: its section was not run again
    assert "| lorenz · slider | 25 ms |" in targets and "40 ms" not in targets
    assert text.index("## bench_solve") < text.index("## bench_ui")  # the suite's order
    assert "(25 s)" in text and "re-run on 2026-12-02T15:00:00" in text
    assert "- date: old" in text  # the header (machine, versions) is the earlier run's
