"""Cold start: what a fresh install costs before its first flow and its first dashboard page.

Run: ``python benchmarks/bench_cold_start.py [--port 8602]``. Prints a Markdown table (the README
quotes it).

Copies the package, the app and its assets into a fresh temporary folder with no numba cache,
then measures in fresh processes (``PYTHONPATH`` = the copy): the import, the first flow of the
default configs (numpy solver while the compiled one is compiled in the background), how long
the background compilation takes, the first flow once the cache is filled, the old foreground
wait (``compile_ode``) and, with a real ``streamlit run`` server and headless Chromium, the time
from the first request to a complete Flows page (every Plotly figure drawn, nothing running).
Needs /usr/bin/chromium and the ``playwright`` package for the page rows. Wall times depend on the
machine's load (printed at the end); CPU seconds (of the measuring process, or of the server
for a page) much less.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
FLOWS_FIGURES = 4

_FLOW = """
import json, sys, time
start, cpu_start = time.perf_counter(), time.process_time()
import landscape as ls
from landscape.dynamics import warmup
imported, cpu_imported = time.perf_counter(), time.process_time()
ready = warmup.compiled_solver_ready()
config = ls.RunConfig(**json.loads(sys.argv[1]))
run = ls.run_flow(config)
done, cpu_done = time.perf_counter(), time.process_time()
print(json.dumps({"import": [imported - start, cpu_imported - cpu_start], "flow": [done - imported, cpu_done - cpu_imported],
                  "ready": ready, "message": f"{run.status.code} at t = {run.t[-1]:.0f}"}))
"""

_COMPILE = """
import time
start, cpu = time.perf_counter(), time.process_time()
from landscape.dynamics.ode import compile_ode
compile_ode()
print(time.perf_counter() - start, time.process_time() - cpu)
"""

_LIGHT = """
import time
import numpy as np
start, cpu = time.perf_counter(), time.process_time()
from landscape.dynamics.compiled_flow import flow_model, velocity
y = np.concatenate([np.eye(2).ravel() * 0.5, np.full(4, 0.1)])
velocity(y, flow_model(np.eye(2), 0.5, 0.0, 2, 1e6), np.empty_like(y), True)
print(time.perf_counter() - start, time.process_time() - cpu)
"""


def _fresh_copy(parent: Path) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="cold-start-", dir=parent))
    ignore = shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "artifacts")
    for name in ("landscape", "views", "assets", ".streamlit"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, folder / name, ignore=ignore)
    shutil.copy2(ROOT / "app.py", folder / "app.py")
    return folder


def _clear_cache(folder: Path) -> None:
    for path in [*folder.rglob("*.nb[ic]"), *folder.rglob("*.ready")]:  # the cache and its marker
        path.unlink()


def _environment(folder: Path) -> dict:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("LANDSCAPE_", "NUMBA_"))}
    environment.update(PYTHONPATH=str(folder), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return environment


def _python(folder: Path, code: str, *args: str) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=folder, env=_environment(folder), capture_output=True,
                          text=True, check=True)
    return done.stdout.strip(), time.perf_counter() - start


def _wait_for_compiler(folder: Path) -> float:
    """Seconds until the copy's solver is compiled (the background child holds a lock meanwhile)."""
    lock = _python(folder, "from landscape.dynamics import warmup; print(warmup._lock_path())")[0]
    probe = "from landscape.dynamics import warmup; print(warmup.compiled_solver_ready())"
    start = time.perf_counter()
    import fcntl

    while True:
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            fcntl.flock(handle, fcntl.LOCK_UN)
        # The child may not hold the lock yet (it takes it after its imports): wait a little for it.
        if _python(folder, probe)[0] == "True" or time.perf_counter() - start > 10:
            return time.perf_counter() - start
        time.sleep(0.2)


def _flow(folder: Path, config: dict) -> tuple[dict, float]:
    out, wall = _python(folder, _FLOW, json.dumps(config))
    return json.loads(out), wall


def _serve(folder: Path, port: int) -> tuple[subprocess.Popen, float]:
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    start = time.perf_counter()
    server = subprocess.Popen(command, cwd=folder, env=_environment(folder), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while time.perf_counter() - start < 120:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return server, time.perf_counter() - start
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise TimeoutError("streamlit did not answer within two minutes")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _page_seconds(browser, port: int, screenshot: Path | None) -> tuple[float, float, float]:
    """Seconds from the first request to the page title, to the first figure, and to a complete Flows page.

    Complete: every figure drawn and nothing running (no spinner, no "Running..." widget).
    """
    page = browser.new_context(viewport={"width": 1440, "height": 2000}).new_page()
    start = time.perf_counter()
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector("h1:has-text('Flows')", timeout=180_000)
    title = time.perf_counter() - start
    first_figure = None
    busy = '[data-testid="stStatusWidget"], [data-testid="stSpinner"], [data-testid="stSkeleton"]'
    while time.perf_counter() - start < 180:
        drawn = page.locator(".js-plotly-plot:has(.main-svg)").count()
        if drawn and first_figure is None:
            first_figure = time.perf_counter() - start
        if drawn >= FLOWS_FIGURES and page.locator(busy).count() == 0:
            elapsed = time.perf_counter() - start
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
            page.context.close()
            return title, first_figure, elapsed
        page.wait_for_timeout(100)
    raise TimeoutError("the Flows page was not complete within three minutes")


def _page_rows(folder: Path, port: int, screenshots: Path | None) -> list:
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for label, clear in (("empty numba cache", True), ("filled cache (a later server start)", False)):
                if clear:
                    _clear_cache(folder)
                server, started = _serve(folder, port)
                try:
                    shot = None if screenshots is None else screenshots / f"cold_start_{'empty' if clear else 'filled'}.png"
                    cpu = _cpu_seconds(server.pid)
                    title, first, seconds = _page_seconds(browser, port, shot)
                    cpu = _cpu_seconds(server.pid) - cpu
                finally:
                    server.terminate()
                    server.wait(timeout=30)
                rows.append((f"`streamlit run app.py` until it answers, {label}", started, None))
                rows.append((f"  first request to the page title, {label}", title, None))
                rows.append((f"  first request to the first figure, {label}", first, None))
                rows.append((f"  first request to a complete Flows page (4 figures; CPU: the server's), {label}",
                             seconds, cpu))
                if clear:
                    rows.append(("background compilation after the server start, until the cache is filled",
                                 started + seconds + _wait_for_compiler(folder), None))
        finally:
            browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8602)
    parser.add_argument("--no-page", action="store_true", help="skip the streamlit + Chromium rows")
    parser.add_argument("--page-only", action="store_true", help="only the streamlit + Chromium rows")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "tests" / "artifacts" / "screenshots")
    args = parser.parse_args()
    dashboard = {"eta2": False}  # the dashboard's default settings (the sidebar has the eta^2 term off)
    library = {}  # RunConfig(): K = M = 4, eta2 on, lr 0.5, t_max 1000, d = 1000, seed 0
    rows = []
    with tempfile.TemporaryDirectory() as parent:
        folder = _fresh_copy(Path(parent))
        if not args.page_only:
            rows += _flow_rows(folder, dashboard, library)
        if not args.no_page:
            args.screenshots.mkdir(parents=True, exist_ok=True)
            rows += _page_rows(folder, args.port, args.screenshots)
        _wait_for_compiler(folder)
    _print(rows)


def _flow_rows(folder: Path, dashboard: dict, library: dict) -> list:
    """Import and first flows in fresh processes, each from an empty cache unless it says filled."""
    rows = []
    imported, wall = _flow(folder, dashboard)
    rows.append(("import landscape (fresh process)", *imported["import"]))
    rows.append((f"first flow, dashboard default (eta2 off), empty cache: numpy solver ({imported['message']})",
                 *imported["flow"]))
    rows.append(("  the same, whole process (python start, import, flow)", wall, None))
    rows.append(("background compilation started by that flow, until the cache is filled",
                 wall + _wait_for_compiler(folder), None))
    warm, wall = _flow(folder, dashboard)
    rows.append((f"first flow, dashboard default, filled cache: compiled solver (ready: {warm['ready']})", *warm["flow"]))
    _clear_cache(folder)
    cold, wall = _flow(folder, library)
    rows.append((f"first flow, RunConfig() default (eta2 on), empty cache: numpy solver ({cold['message']})",
                 *cold["flow"]))
    rows.append(("  the same, whole process", wall, None))
    _wait_for_compiler(folder)
    warm, _ = _flow(folder, library)
    rows.append((f"first flow, RunConfig() default (eta2 on), filled cache: compiled solver (ready: {warm['ready']})",
                 *warm["flow"]))
    _clear_cache(folder)
    rows.append(("old behaviour: compile_ode() in the foreground, empty cache",
                 *map(float, _python(folder, _COMPILE)[0].split())))
    _clear_cache(folder)
    rows.append(("option 'compile less': the right-hand side alone, empty cache",
                 *map(float, _python(folder, _LIGHT)[0].split())))
    _clear_cache(folder)
    return rows



def _print(rows: list) -> None:
    width = max(len(label) for label, _, _ in rows)
    print(f"| {'measurement'.ljust(width)} | wall s | CPU s |")
    print(f"| {'-' * width} | --- | --- |")
    for label, wall, cpu in rows:
        print(f"| {label.ljust(width)} | {wall:.2f} | {'' if cpu is None else f'{cpu:.2f}'} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average (1 min) at the end: {load:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
