"""Run the benchmark suite and write BENCHMARKS.md.

    python benchmarks/run.py            # the full suite (tens of minutes on 2 cores)
    python benchmarks/run.py --quick    # a short smoke run (small problems, few repeats)
    python benchmarks/run.py --only bench_solve,bench_scipy
    python benchmarks/run.py --only bench_ui --update   # re-run sections of BENCHMARKS.md

Every figure is a ratio or a pair measured side by side in this run, with medians over
repeats; the machine and the versions are recorded at the top of the report. Plots of the
same rows (benchmarks/plots.py, needs matplotlib) go to benchmark-figures/ next to the report
and are embedded under each section.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIGURES = "benchmark-figures"  # the folder for the PNGs, next to the report
SUITE = {
    "bench_solve": "odelab vs diffrax called directly; cold vs warm compilation cache",
    "bench_scipy": "odelab vs scipy solve_ivp and scipy finite-difference gradients",
    "bench_gradients": "gradient/solve and HVP/gradient per method; Hessians; memory",
    "work_precision": "stiff solvers: odelab Rodas5/RadauIIA5 vs Kvaerno5 and scipy",
    "bench_fields": "gradient fields batched vs looped; ensembles over devices; Lanczos",
    "bench_ui": "explorer latency from a slider move to new plot data",
    "bench_first_frame": "explorer first frame of a new system: when each view is drawn",
    "bench_compile": "where a first call's time goes: tracing, lowering, XLA compilation",
    "bench_check": "gradient check: first verdict / one gradient's first call; the tutorial",
    "bench_torch": "odelab vs torchdiffeq on a neural ODE (needs torch + torchdiffeq)",
}


def _machine() -> list[str]:
    import diffrax
    import equinox
    import jax

    import odelab

    return [
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        f"- python {platform.python_version()}, jax {jax.__version__}, "
        f"diffrax {diffrax.__version__}, equinox {equinox.__version__}, "
        f"odelab {odelab.__version__}",
        f"- JAX devices: {_devices()}",
    ]


def _devices() -> str:
    """What the benchmarks ran on: each device with its platform and kind, and the processes."""
    import jax

    listed = ", ".join(f"{d} (platform {d.platform}, kind {d.device_kind})" for d in jax.devices())
    count = jax.process_count()
    return f"{listed}; {count} process{'es' if count > 1 else ''}"


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |")
    return lines


_TARGET = re.compile(r"target (median )?(≤|<|≥) ?([0-9.]+) ?(%|ms)?")


def _targets(results: dict[str, list[dict]]) -> list[str]:
    """A table of every row whose note states a target, with the measured value and whether it
    was met (a "< 5%" target is on the ratio: below 1.05)."""
    lines = []
    for rows in results.values():
        for row in rows:
            match = _TARGET.search(str(row.get("note", "")))
            if not match:
                continue
            median, op, bound, unit = match.groups()
            bound = float(bound)
            value = row.get("median_ms") if median else row.get(
                "ratio", row.get("odelab / torchdiffeq"))
            if unit == "%":
                bound = 1.0 + bound / 100.0
            if value is None:
                continue
            met = {"≤": value <= bound, "<": value < bound, "≥": value >= bound}[op]
            what = row.get("benchmark") or " · ".join(
                str(row[k]) for k in ("problem", "what", "method", "case", "odelab")
                if row.get(k))
            if row.get("torchdiffeq"):
                what += f" vs torchdiffeq {row['torchdiffeq']}"
            shown = f"{value:.3g}" + (" ms" if median else "")
            lines.append(f"| {what} | {shown} | {match.group(0)} | {'yes' if met else 'NO'} |")
    if not lines:
        return []
    return ["## Targets", "", "| measurement | value | target | met |", "|---|---|---|---|",
            *lines, ""]


def _sections(lines: list[str]) -> dict[str, list[str]]:
    """The report's "## name: ..." sections by name (Targets included), each up to the next."""
    sections: dict[str, list[str]] = {}
    name = None
    for line in lines:
        if line.startswith("## "):
            name = line[3:].split(":", 1)[0].strip()
            sections[name] = []
        if name is not None:
            sections[name].append(line)
    return sections


def _merged(old_text: str, new: list[str], rerun: list[str], stamp: str) -> list[str]:
    """An earlier report with the sections in `rerun` replaced by those of the `new` one.

    The targets table keeps the earlier rows that belong to sections not re-run (a row belongs
    to the section whose tables name its measurement) and takes the new rows of the others;
    each re-run section says when it was measured.
    """
    old_lines = old_text.splitlines()
    old, fresh = _sections(old_lines), _sections(new)
    head = old_lines[:old_lines.index(next(line for line in old_lines if line.startswith("## ")))]

    def rows(section: list[str]) -> list[str]:
        return [line for line in section if line.startswith("| ") and "measurement" not in line]

    def belongs(row: str, name: str) -> bool:
        parts = [p.strip() for p in row.split("|")[1].split(" · ")]
        return any(all(p in line for p in parts) for line in rows(old.get(name, [])))

    kept = [row for row in rows(old.get("Targets", []))
            if not any(belongs(row, name) for name in rerun)]
    targets = kept + rows(fresh.get("Targets", []))
    out = head + ["## Targets", "", "| measurement | value | target | met |", "|---|---|---|---|",
                  *targets, ""]
    names = [n for n in SUITE if n in old or n in fresh]
    for name in names:
        if name in rerun and name in fresh:
            section = fresh[name]
            out += [section[0], "", f"(re-run on {stamp} with `--only ... --update`; the "
                    "machine and versions are those at the top)"] + section[1:]
        else:
            out += old.get(name, [])
    return out


def run(quick: bool, only: list[str] | None, output: Path, update: bool = False) -> int:
    sys.path.insert(0, str(HERE))
    report = ["# odelab benchmarks", "", "Generated by `python benchmarks/run.py"
              + (" --quick" if quick else "") + "`. Ratios are odelab / other unless the "
              "column says otherwise; times in seconds (medians).", "", *_machine(), ""]
    # the devices measured, in the log too (with the gpu extra on a GPU machine: the GPU)
    print(f"JAX devices: {_devices()}", flush=True)
    failures = 0
    results: dict[str, list[dict]] = {}
    ends: dict[str, int] = {}  # where each section's figures go in `report`
    for name, what in SUITE.items():
        if only and name not in only:
            continue
        report += [f"## {name}: {what}", ""]
        if not (HERE / f"{name}.py").exists():
            report += ["(not part of this checkout)", ""]
            continue
        start = time.perf_counter()
        try:
            module = importlib.import_module(name)
            rows = module.run(quick=quick)
        except ModuleNotFoundError as err:
            report += [f"Skipped: {err.name} is not installed.", ""]
            continue
        except Exception:
            failures += 1
            report += ["```", traceback.format_exc(limit=5), "```", ""]
            continue
        report += _table(rows) + ["", f"({time.perf_counter() - start:.0f} s)", ""]
        results[name], ends[name] = rows, len(report)
        print(f"{name}: {len(rows)} rows in {time.perf_counter() - start:.0f} s", flush=True)
    head = len(_machine()) + 5  # after the title, the note and the machine lines
    targets = _targets(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    previous = output.read_text() if update and output.exists() else None
    stamp = datetime.datetime.now().isoformat(timespec="seconds")

    def write(lines: list[str]) -> None:
        if previous is not None and only:
            lines = _merged(previous, lines, only, stamp)
        output.write_text("\n".join(lines))

    write(report[:head] + targets + report[head:])  # the tables first: a plot failure loses none
    final = _with_figures(report, results, ends, output)
    write(final[:head] + targets + final[head:])
    print(f"wrote {output}")
    return 1 if failures else 0


def _with_figures(report: list[str], results: dict, ends: dict, output: Path) -> list[str]:
    """The report with the figures drawn from `results` embedded under their sections."""
    if not results:
        return report
    folder = output.parent / FIGURES
    try:
        import plots

        figures, failed = plots.write_figures(results, folder)
    except ModuleNotFoundError as err:
        if err.name != "matplotlib":
            raise
        return report + ["Figures not drawn: matplotlib is not installed "
                         "(`pip install matplotlib`).", ""]
    report = list(report)
    for name in sorted(ends, key=ends.get, reverse=True):  # insert from the end: indices hold
        report[ends[name]:ends[name]] = [
            f"![{f.caption}]({FIGURES}/{f.name})" + "\n" for f in figures if f.section == name]
    for figure in figures:
        print(f"wrote {folder / figure.name}")
    return report + [f"({message})" for message in failed] + ([""] if failed else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="")
    parser.add_argument("--output", default=str(HERE.parent / "BENCHMARKS.md"))
    parser.add_argument("--update", action="store_true",
                        help="with --only: replace those sections of the existing report")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    return run(args.quick, only, Path(args.output), update=args.update)


if __name__ == "__main__":
    sys.exit(main())
