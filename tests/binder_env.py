"""The Binder environment (binder/), built in a fresh virtual environment once per test session.

It does what repo2docker does on mybinder.org, minus conda: copy the repository as a clone has
it, create a Python environment, and run binder/postBuild from the copy's root, so pip builds
odelab's wheel (and its JupyterLab extension) from source with only what binder/ asks for.
Node.js is this machine's (binder/environment.yml asks conda for nodejs >= 20 instead).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

REPO = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 1200  # seconds; about 2 minutes with a warm pip cache
# postBuild warms the compilation cache for these gallery explorers only (Binder: all of them)
WARM_SYSTEMS = "lotka_volterra"

# What a fresh clone does not have: local environments, caches and build outputs.
_SKIP_NAMES = {".git", ".venv", "node_modules", "test-artifacts", "build", "dist", "__pycache__",
               ".pytest_cache", ".hypothesis", ".ruff_cache", ".ipynb_checkpoints", ".yarn"}
_SKIP_PATHS = {REPO / "extension" / "lib", REPO / "extension" / "lib-test",
               REPO / "extension" / "tsconfig.tsbuildinfo", REPO / "odelab" / "labextension"}


@dataclass(frozen=True)
class BinderEnv:
    """A built Binder environment: the repository copy it was built from and its venv."""

    source: Path
    prefix: Path
    build_seconds: float

    @property
    def bin(self) -> Path:
        return self.prefix / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def environ(self) -> dict[str, str]:
        """The process environment with this venv activated instead of the test runner's.

        PANEL_INLINE is left out: on Binder it comes from binder/start, and so it does here.
        """
        env = {k: v for k, v in os.environ.items()
               if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PANEL_INLINE")}
        runner_bin = str(Path(sys.prefix) / "bin")
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != runner_bin]
        env["PATH"] = os.pathsep.join([str(self.bin), *path])
        env["VIRTUAL_ENV"] = str(self.prefix)
        # the compilation cache binder/postBuild filled, as ~/.cache/odelab/jax is on Binder
        env["ODELAB_CACHE_DIR"] = str(self.cache_dir)
        env["ODELAB_CACHE_MIN_COMPILE_S"] = "0"  # as a Binder image: every program
        return env

    @property
    def cache_dir(self) -> Path:
        """JAX's compilation cache of this environment (postBuild fills it)."""
        return self.prefix.parent / "jax-cache"

    def kernel_manager(self) -> AsyncKernelManager:
        """A manager for a kernel of this venv, started through binder/start as on Binder."""
        kernels = self.prefix.parent / "kernels"
        spec_dir = kernels / "odelab-binder"
        spec_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": ["bash", str(self.source / "binder" / "start"), str(self.python), "-m",
                     "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "odelab (Binder environment)",
            "language": "python",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        return AsyncKernelManager(kernel_name="odelab-binder",
                             kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))


def _skip(directory: str, names: list[str]) -> set[str]:
    here = Path(directory)
    return {n for n in names
            if n in _SKIP_NAMES or n.endswith(".egg-info") or here / n in _SKIP_PATHS}


def _copy_repository(dest: Path) -> None:
    shutil.copytree(REPO, dest, ignore=_skip, symlinks=True)
    # The npm packages are pinned by extension/yarn.lock; hard-linking the ones already fetched
    # spares a download of the same files (jlpm install still checks them against the lock).
    modules = REPO / "extension" / "node_modules"
    if modules.is_dir():
        subprocess.run(["cp", "-al", str(modules), str(dest / "extension" / "node_modules")],
                       check=False, capture_output=True)


@functools.cache
def build(root: Path) -> BinderEnv:
    """Copy the repository to root/source and build binder/ into root/venv (once per process)."""
    root.mkdir(parents=True, exist_ok=True)
    source, prefix = root / "source", root / "venv"
    for leftover in (source, prefix, root / "jax-cache"):  # from a build that failed part-way
        shutil.rmtree(leftover, ignore_errors=True)
    start = time.perf_counter()
    _copy_repository(source)
    subprocess.run([sys.executable, "-m", "venv", str(prefix)], check=True)
    env = BinderEnv(source=source, prefix=prefix, build_seconds=0.0)
    log = root / "postBuild.log"
    with log.open("w") as out:
        done = subprocess.run(
            ["bash", "binder/postBuild"], cwd=source, stdout=out, stderr=subprocess.STDOUT,
            env={**env.environ(), "ODELAB_BINDER_PIP_CACHE": "1",
                 "ODELAB_BINDER_WARM": WARM_SYSTEMS}, timeout=BUILD_TIMEOUT,
        )
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise RuntimeError(f"binder/postBuild failed (exit {done.returncode}); log {log}:\n{tail}")
    return BinderEnv(source=source, prefix=prefix, build_seconds=time.perf_counter() - start)


def session_env(tmp_path_factory) -> BinderEnv:
    """The session's Binder environment, shared by every test module that asks for it.

    With pytest-xdist every worker has its own base temp directory under one shared parent;
    the environment is built once there, under a file lock, and the other workers reuse it.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return _shared_build(base / "binder")


def _shared_build(root: Path) -> BinderEnv:
    root.mkdir(parents=True, exist_ok=True)
    done = root / "built.json"
    with (root.parent / "binder.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if done.exists():
            return BinderEnv(**{k: Path(v) if k != "build_seconds" else v
                                for k, v in json.loads(done.read_text()).items()})
        env = build(root)
        done.write_text(json.dumps({"source": str(env.source), "prefix": str(env.prefix),
                                    "build_seconds": env.build_seconds}))
        return env
