"""Deployable (issue 18): the app starts exactly as a hosting service starts it.

Hosts install ``requirements.txt`` and run ``streamlit run app.py`` from the repository root.
The default tests check the files a host reads and start a real server from the root in demo
mode; the slow one does it all in a fresh venv made from requirements.txt only.
"""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_browser import _free_port, _wait_healthy

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["views/flows.py", "views/critical_points.py", "views/hessian_spectra.py", "views/families.py", "views/theory.py"]


def _version(text):
    return tuple(int(part) for part in text.split(".")[:2])


def test_requirements_install_the_package_itself():
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines in (["-e ."], ["."]), lines


def test_the_streamlit_floor_is_what_the_app_uses():
    # pyproject allowed streamlit>=1.40, but bind="query-params" needs 1.55 and
    # st.dataframe(selection_default=) 1.56: an older Streamlit crashed.
    floor = re.search(r'"streamlit>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert _version(floor) >= (1, 56)
    import streamlit

    assert _version(streamlit.__version__) >= _version(floor)


def test_dockerfile_and_space_config_agree():
    docker = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in docker and "streamlit run app.py" in docker
    assert "LANDSCAPE_DEMO=1" in docker
    port = re.search(r"EXPOSE (\d+)", docker).group(1)
    space = (ROOT / "deploy" / "huggingface" / "README.md").read_text()
    front = space.split("---")[1]
    assert "sdk: docker" in front and f"app_port: {port}" in front


def test_the_shipped_assets_are_found():
    # After the move into subpackages, the default spec and store pointed into landscape/assets/,
    # which does not exist: --default-spec failed and the Families page showed no shipped sweep.
    from landscape.catalogues.sweep_spec import DEFAULT_SPEC
    from landscape.catalogues.sweep_store import DEFAULT_STORE

    assert DEFAULT_SPEC.is_file() and (DEFAULT_STORE / "sweep.json").is_file()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_in_demo_mode_from_the_repository_root(page, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LANDSCAPE_DEMO", "1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.query_params["tmax"] = "30"
    at.query_params["runs"] = "1"
    at.run()
    if page != PAGES[0]:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title and any("Demo caps" in caption.value for caption in at.sidebar.caption)


def _serve(python, env):
    port = _free_port()
    command = [python, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), \
        f"http://127.0.0.1:{port}"


def test_a_real_server_starts_from_the_repository_root():
    env = {**os.environ, "LANDSCAPE_DEMO": "1"}
    process, url = _serve(sys.executable, env)
    try:
        _wait_healthy(url, process)
        import urllib.request

        with urllib.request.urlopen(f"{url}/flows", timeout=10) as response:
            assert response.status == 200 and b"<div id=\"root\">" in response.read()
    finally:
        process.terminate()
        process.wait(timeout=10)


_EVERY_PAGE = textwrap.dedent("""
    import sys
    from streamlit.testing.v1 import AppTest
    for page in sys.argv[1:]:
        at = AppTest.from_file("app.py", default_timeout=300)
        at.query_params["tmax"] = "30"
        at.run()
        if page != sys.argv[1]:
            at.switch_page(page)
            at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        print(page, "ok", flush=True)
""")


@pytest.mark.slow
def test_a_fresh_venv_from_requirements_only_serves_every_page(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "-r", "requirements.txt"], cwd=ROOT,
                             capture_output=True, text=True, timeout=1800)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {key: value for key, value in os.environ.items() if not key.startswith("LANDSCAPE_")}
    env["LANDSCAPE_DEMO"] = "1"
    pages = subprocess.run([python, "-c", _EVERY_PAGE, *PAGES], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=1800)
    assert pages.returncode == 0 and pages.stdout.count(" ok") == len(PAGES), pages.stderr[-3000:]
    process, url = _serve(python, env)
    try:
        _wait_healthy(url, process, timeout=120)
    finally:
        process.terminate()
        process.wait(timeout=10)
