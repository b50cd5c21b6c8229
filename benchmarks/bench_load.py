"""Load test: a class of visitors opening the same lecture link at once on one server (issue 18).

Starts ``streamlit run app.py`` in demo mode on the loopback interface, then N visitors (default
30) connect at the same moment through Streamlit's own websocket protocol (``/_stcore/stream``,
the protobuf messages the browser sends: one ``rerun_script`` with the link's query string) and
wait for the script to finish. A browser adds drawing time on the visitor's own machine only; the
server's work is the same. Prints, as JSON and as a table:

- time to render per visitor (connect -> script finished), median and maximum;
- the server's resident memory (RSS, with its child processes) before, at its peak and after;
- the server's CPU seconds for the whole class against one visitor alone (a cold cache): close to
  one visitor's means shared results were computed once (``st.cache_data``), not N times;
- the bytes held by the app's cached functions (``/_stcore/metrics``): unchanged by the class.

Bounded: every visitor gives up after ``--timeout`` seconds; the server is stopped at the end.
Only 127.0.0.1 is contacted. Usage::

    python benchmarks/bench_load.py [--visitors 30] [--port 8606] [--link "tmax=1000&runs=4"]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The default view of the Flows page: the link a lecturer would share first.
DEFAULT_LINK = ""


def _rss_bytes(pid):
    """Resident memory of a process and its children (from /proc), in bytes."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    except OSError:
        pass
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_healthy(url, process, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError("the server did not become healthy")


async def _visit(port, link, timeout):
    """One visitor: connect, ask for the page with the link's query string, wait for the script to end."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    start = time.perf_counter()
    async with websockets.connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"],
                                  max_size=None, open_timeout=timeout) as socket:
        message = BackMsg()
        message.rerun_script.query_string = link
        message.rerun_script.page_name = ""
        await socket.send(message.SerializeToString())
        deltas, exceptions = 0, 0
        while True:
            raw = await asyncio.wait_for(socket.recv(), timeout=timeout - (time.perf_counter() - start))
            forward = ForwardMsg()
            forward.ParseFromString(raw)
            kind = forward.WhichOneof("type")
            if kind == "delta":
                deltas += 1
                element = forward.delta.new_element
                exceptions += element.WhichOneof("type") == "exception"
            elif kind == "script_finished":
                status = ForwardMsg.ScriptFinishedStatus.Name(forward.script_finished)
                if status != "FINISHED_EARLY_FOR_RERUN":
                    return {"seconds": time.perf_counter() - start, "status": status, "deltas": deltas,
                            "exceptions": exceptions}


async def _class(port, link, visitors, timeout, sample):
    tasks = [asyncio.create_task(_visit(port, link, timeout)) for _ in range(visitors)]
    while not all(task.done() for task in tasks):
        sample()
        await asyncio.sleep(0.2)
    results = []
    for task in tasks:
        try:
            results.append(task.result())
        except Exception as error:  # noqa: BLE001 - a visitor that failed is counted, with the reason
            results.append({"seconds": None, "status": f"{type(error).__name__}: {error}", "deltas": 0, "exceptions": 0})
    return results


def _cache_entries(url):
    """Bytes held by each of the app's st.cache_data functions, from Streamlit's metrics endpoint.

    Unchanged after the class means no visitor added a result: they were all served the one
    computed for the first visitor.
    """
    try:
        with urllib.request.urlopen(f"{url}/_stcore/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    entries = {}
    for line in text.splitlines():
        if line.startswith("cache_memory_bytes{") and 'cache_type="st_cache_data"' in line:
            name = line.split('cache="', 1)[1].split('"', 1)[0]
            entries[name] = entries.get(name, 0) + int(float(line.rsplit(" ", 1)[1]))
    return entries


def run(visitors, port, link, timeout):
    env = {key: value for key, value in os.environ.items() if not key.startswith("LANDSCAPE_")}
    env.update(LANDSCAPE_DEMO="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, server)
        idle = _rss_bytes(server.pid)
        cpu0 = _cpu_seconds(server.pid)
        alone = asyncio.run(_class(port, link, 1, timeout, lambda: None))[0]
        cpu_alone = _cpu_seconds(server.pid) - cpu0
        after_one = _rss_bytes(server.pid)
        cache_one = _cache_entries(url)
        peak = [after_one]
        cpu1 = _cpu_seconds(server.pid)
        wall = time.perf_counter()
        results = asyncio.run(_class(port, link, visitors, timeout, lambda: peak.append(_rss_bytes(server.pid))))
        wall = time.perf_counter() - wall
        cpu_class = _cpu_seconds(server.pid) - cpu1
        cache_class = _cache_entries(url)
        after = _rss_bytes(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
    times = [r["seconds"] for r in results if r["seconds"] is not None]
    return {
        "visitors": visitors, "link": link or "(default view)",
        "one_visitor_cold_seconds": alone["seconds"], "one_visitor_cpu_seconds": cpu_alone,
        "class_wall_seconds": wall, "class_cpu_seconds": cpu_class,
        "render_seconds_median": statistics.median(times) if times else None,
        "render_seconds_max": max(times) if times else None,
        "rendered": len(times), "finished_ok": sum(r["status"] == "FINISHED_SUCCESSFULLY" for r in results),
        "exceptions_shown": sum(r["exceptions"] for r in results),
        "failures": sorted({r["status"] for r in results if r["status"] != "FINISHED_SUCCESSFULLY"}),
        "rss_idle_mb": idle / 2**20, "rss_after_one_mb": after_one / 2**20, "rss_peak_mb": max(peak) / 2**20,
        "rss_after_mb": after / 2**20,
        "cache_entries_after_one": cache_one, "cache_entries_after_class": cache_class,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=30)
    parser.add_argument("--port", type=int, default=8606)
    parser.add_argument("--link", default=DEFAULT_LINK, help="query string of the shared link (without '?')")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a visitor waits before giving up")
    args = parser.parse_args(argv)
    if not 1 <= args.visitors <= 200:
        parser.error("--visitors must be from 1 to 200")
    result = run(args.visitors, args.port, args.link, args.timeout)
    rows = [
        ("visitors opening the link at once", f"{result['visitors']} ({result['link']})"),
        ("one visitor alone, cold cache: time to render / server CPU",
         f"{result['one_visitor_cold_seconds']:.2f} s / {result['one_visitor_cpu_seconds']:.2f} s"),
        ("the class: rendered / finished without error / exceptions shown",
         f"{result['rendered']} / {result['finished_ok']} / {result['exceptions_shown']}"),
        ("the class: time to render, median / max",
         f"{result['render_seconds_median']:.2f} s / {result['render_seconds_max']:.2f} s"),
        ("the class: server CPU (shared cache: no recomputation)", f"{result['class_cpu_seconds']:.2f} s"),
        ("server memory (RSS): idle / after one / peak / after",
         f"{result['rss_idle_mb']:.0f} / {result['rss_after_one_mb']:.0f} / {result['rss_peak_mb']:.0f} / "
         f"{result['rss_after_mb']:.0f} MB"),
        ("st.cache_data bytes: after one visitor / after the class",
         f"{sum(result['cache_entries_after_one'].values()):,} / {sum(result['cache_entries_after_class'].values()):,}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'measurement'.ljust(width)} | result |\n| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    print(json.dumps(result))
    return 0 if result["finished_ok"] == result["visitors"] and (result["render_seconds_max"] or 1e9) < 30 else 1


if __name__ == "__main__":
    sys.exit(main())
