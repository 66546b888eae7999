"""Shared test setup: float64 (through importing odelab), hypothesis profile, markers."""

import asyncio
import os

import pytest
from hypothesis import HealthCheck, settings

# Explorers compile ahead on a thread once idle (odelab.ui.ahead); in the suite that would only
# add load to the tests that follow. tests/test_ui_ahead.py turns it on where it is tested.
os.environ.setdefault("ODELAB_COMPILE_AHEAD", "0")

import odelab  # noqa: E402, F401  (float64 on)

# Tests compile JAX programs: generous deadlines, few examples, deterministic in CI.
settings.register_profile(
    "odelab",
    max_examples=25,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("odelab")


def pytest_collection_modifyitems(config, items):
    # Browser tests need Debian's chromium; they are part of the suite, not optional.
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With pytest-xdist (`-n 2`): every browser test on one worker, the rest spread as usual.

    The browser tests share one JupyterLab server and one Chromium per worker; on one worker they
    start those once. (`--dist loadgroup` would say the same with marks, but pytest-xdist 3.8 sets
    the group on a node attribute pytest 9 no longer reads, so the marks are ignored.) Collected
    first, they also start first, while the other worker takes everything else.
    """
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class BrowserTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "browser" if nodeid.startswith("tests/browser/") else nodeid

    return BrowserTestsTogether(config, log)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, through Python Playwright: one per test process.

    Shared by tests/browser/ and the served-explorer tests: Playwright's sync API runs one
    instance per thread, so a second `sync_playwright()` in the same worker would fail.
    """
    from browser_options import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install_browser.sh` first.")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(autouse=True)
def _no_borrowed_event_loop(request):
    """Tests that do not drive a browser see no running event loop, as in a plain script.

    Playwright's sync API (the `browser` fixture, session-wide in a worker) leaves its own loop
    marked as running on the main thread between its calls. Code under test that asks for the
    running loop (a notebook kernel's, in real use) would take that idle loop for a kernel's and
    hand it work it never runs. Hidden for the test's duration; restored after.
    """
    loop = asyncio._get_running_loop()
    if loop is None or "browser" in request.fixturenames:
        yield
        return
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(loop)


# Each compiled XLA program maps a few memory regions, and JAX keeps every program it compiled.
# A test worker compiles tens of thousands of programs (one module of stiff-solver tests: ~7000
# mappings); at Linux's vm.max_map_count (65530) the next mmap fails and XLA segfaults while
# compiling or serialising. Past this many mappings the worker drops its compiled programs
# (they are recompiled, or read from the persistent cache, when needed again).
_MAX_MAPPINGS = 20000


def _mapping_count() -> int:
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux: no such limit to stay under
        return 0


@pytest.fixture(autouse=True)
def _stay_under_the_mapping_limit():
    yield
    if _mapping_count() > _MAX_MAPPINGS:
        import gc

        import jax

        jax.clear_caches()
        gc.collect()
