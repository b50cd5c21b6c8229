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
PAGES = ["views/flows.py", "views/critical_points.py", "views/hessian_spectra.py", "views/landscape_map.py",
         "views/families.py", "views/learning_rate.py", "views/theory.py"]


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


def _dockerfile():
    """The Dockerfile's instructions as ``(INSTRUCTION, arguments)``, continuation lines joined."""
    steps, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if not line.endswith("\\"):
            instruction, _, arguments = pending.partition(" ")
            steps.append((instruction.upper(), arguments.strip()))
            pending = ""
    return steps


def _docker_env():
    env = {}
    for instruction, arguments in _dockerfile():
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", arguments)))
    return env


# The Dockerfile was never built here (no Docker engine on this machine, only the client): these
# tests check what can be checked without building it. What the image needs is in the build
# context, its RUN steps work the way it runs them, and its CMD is the command README gives and
# the other tests serve with.


def test_the_docker_build_context_holds_what_the_app_needs():
    from fnmatch import fnmatch

    copies = [arguments.split() for instruction, arguments in _dockerfile() if instruction == "COPY"]
    sources = [word for words in copies for word in words[:-1] if not word.startswith("--")]
    assert sources == ["."]
    ignored = [line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    needed = ["app.py", "requirements.txt", "pyproject.toml", "README.md", "landscape/__init__.py",
              "landscape/dynamics/ode.py", "views/flows.py", "views/landscape_map.py", "assets/catalogue_default.json",
              "assets/connections_default.json", "assets/sweep_default/sweep.json", ".streamlit/config.toml"]
    for path in needed:
        if path == ".streamlit/config.toml" and not (ROOT / path).exists():
            continue
        assert (ROOT / path).exists(), path
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        hit = [p for p in ignored for prefix in prefixes if fnmatch(prefix, p.replace("**/", "*"))]
        assert not hit, f"{path} is excluded from the image by .dockerignore {hit}"


def test_the_dockerfile_serves_as_readme_says_and_the_tests_check():
    steps = _dockerfile()
    env = _docker_env()
    (command,) = [arguments for instruction, arguments in steps if instruction == "CMD"]
    assert command.startswith("streamlit run app.py ") and '--server.port "$PORT"' in command
    assert "--server.address 0.0.0.0" in command and "--server.headless true" in command
    (exposed,) = [arguments for instruction, arguments in steps if instruction == "EXPOSE"]
    assert env["PORT"] == exposed and env["LANDSCAPE_DEMO"] == "1"
    (health,) = [arguments for instruction, arguments in steps if instruction == "HEALTHCHECK"]
    assert "/_stcore/health" in health  # the endpoint test_browser._wait_healthy polls
    readme = (ROOT / "README.md").read_text()
    assert f"docker run -p {exposed}:{exposed} landscape" in readme and "docker build -t landscape ." in readme
    runs = [arguments for instruction, arguments in steps if instruction == "RUN"]
    assert "pip install -r requirements.txt" in runs  # what every other host installs


def _python_steps():
    """The Dockerfile's ``RUN python -c "..."`` programs."""
    found = []
    for instruction, arguments in _dockerfile():
        if instruction == "RUN" and arguments.startswith("python -c "):
            found.append(arguments[len("python -c "):].strip().strip('"'))
    return found


def test_the_dockerfiles_python_steps_run_as_it_runs_them():
    # As the image runs them: from the repository root (its WORKDIR holds the copy), with its ENV.
    (program,) = _python_steps()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LANDSCAPE_")}, **_docker_env()}
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]


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
    for program in _python_steps():  # the Dockerfile's build steps, in this venv
        step = subprocess.run([python, "-c", program], cwd=ROOT, env={**env, **_docker_env()}, capture_output=True,
                              text=True, timeout=1800)
        assert step.returncode == 0, step.stderr[-2000:]
    pages = subprocess.run([python, "-c", _EVERY_PAGE, *PAGES], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=1800)
    assert pages.returncode == 0 and pages.stdout.count(" ok") == len(PAGES), pages.stderr[-3000:]
    # The image's CMD, word for word, with the venv's streamlit first on PATH and a free port.
    (command,) = [arguments for instruction, arguments in _dockerfile() if instruction == "CMD"]
    port = _free_port()
    served = {**env, "PORT": str(port), "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}"}
    process = subprocess.Popen(["sh", "-c", f"exec {command}"], cwd=ROOT, env=served, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process, timeout=120)
    finally:
        process.terminate()
        process.wait(timeout=10)
