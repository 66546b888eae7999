"""A short smoke run of the benchmark suite: it runs, and reports measured ratios."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

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
    assert "cold vs warm" in text
    # the targets the issues set, each with its measured value and whether it was met
    targets = text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    assert "solve inside jax.jit vs diffrax" in targets and "target < 5%" in targets
    assert all(line.endswith(("| yes |", "| NO |")) for line in targets.splitlines()
               if line.startswith("| ") and "target" in line and "measurement" not in line)
    assert "Traceback" not in text
    # figures drawn from the same rows, embedded with paths relative to the report
    figures = re.findall(r"!\[[^\]]+\]\(([^)\s]+\.png)\)", text)
    assert figures, "the report embeds no figure"
    for ref in figures:
        png = out.parent / ref
        assert png.is_file(), ref
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, ref
