"""The example notebooks, tested as a user would use them.

- A real JupyterLab server (127.0.0.1, a random token, the project copied into a
  temporary folder) and a real headless browser (Debian's chromium and chromedriver,
  driven by selenium) open notebooks/agc.ipynb, run all cells, wait for the progress
  display to show the finished workflow and the plots, and save a screenshot.
- A workflow started from a notebook outlives a kernel restart: the new kernel attaches
  to it, sees it running, and stops it; nothing half-written, no process left.
- A Dask dashboard link goes through the JupyterLab server (jupyter-server-proxy).
- Both notebooks run under nbclient as they are stored (without outputs).

The browser tests skip, saying why, only where chromium or its driver is not installed
(.ci/run installs them).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, snakemake_exe

pytestmark = pytest.mark.slow

NOTEBOOKS = REPO / "notebooks"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Where the screenshots go besides the test's folder (docs/images, to refresh the docs).
SCREENSHOTS = os.environ.get("SWIFT_RULES_SCREENSHOTS")


def project(root: Path, name: str) -> Path:
    """A copy of what a user's checkout has for the workflows and the notebooks."""
    path = root / name
    for part in ("workflow", "config", "profiles", "notebooks"):
        shutil.copytree(REPO / part, path / part)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    snakemake_exe()
    return tmp_path_factory.mktemp("lab")


def test_notebooks_are_stored_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "python3", path
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path
        assert "widgets" not in nb["metadata"], path  # no saved widget state either
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {"agc.ipynb", "htautau.ipynb"}


# -- JupyterLab and the browser ----------------------------------------------------------


@pytest.fixture(scope="module")
def lab(root):
    pytest.importorskip("jupyterlab")
    pytest.importorskip("jupyter_server_proxy")
    port, token = free_port(), secrets.token_hex(24)
    home = root / ".jupyter"
    settings = home / "lab-settings"
    # No news or update pop-ups; every cell in the page (no windowing), as a user sees it.
    for plugin, values in {
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    }.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    env = {
        **os.environ,
        "JUPYTER_TOKEN": token,  # not on the command line, where `ps` shows it
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = root / "jupyterlab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}", "--ServerApp.allow_remote_access=False",
        "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # CI runs as root
    with open(log, "wb") as out:
        server = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 120
    while True:
        try:
            req = urllib.request.Request(
                f"{url}/api/status", headers={"Authorization": f"token {token}"}
            )
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"url": url, "token": token, "log": log, "root": root}
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    assert token not in log.read_text(), "the server's log shows its token"


@pytest.fixture(scope="module")
def browser(lab):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(
            f"no browser: {', '.join(missing)} missing (apt-get install chromium "
            "chromium-driver; .ci/run does)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(30)
    # Log in once: the token in the URL becomes a cookie, as for a user following the link.
    driver.get(f"{lab['url']}/lab?token={lab['token']}")
    yield driver
    driver.quit()


class Lab:
    """What a user does in JupyterLab, as selenium steps."""

    def __init__(self, driver, lab):
        from selenium.webdriver.common.by import By

        self.d, self.lab, self.By = driver, lab, By

    def open(self, path: str) -> None:
        # ?reset: a fresh workspace, not the tabs of the test before.
        self.d.get(f"{self.lab['url']}/lab/tree/{path}?reset")
        self.until(lambda: self.kernel_status() == "Idle", 180, "the kernel did not start")

    def kernel_status(self) -> str | None:
        """The kernel's state as the status bar shows it ("Python 3 (ipykernel) | Idle")."""
        for item in self.d.find_elements(self.By.CSS_SELECTOR, ".jp-StatusBar-TextItem"):
            if " | " in item.text:
                return item.text.rsplit(" | ", 1)[1].strip()
        return None

    def until(self, condition, timeout: float, what: str, poll: float = 1.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
            except Exception:  # an element replaced while read: ask again
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                self.shot(self.lab["root"] / "failure.png")
                pytest.fail(f"{what} (within {timeout} s); screenshot: failure.png")
            time.sleep(poll)

    def menu(self, menu: str, label: str) -> None:
        By = self.By
        self.d.find_element(
            By.XPATH, f"//div[contains(@class,'lm-MenuBar-itemLabel') and text()='{menu}']"
        ).click()
        item = self.until(
            lambda: self.d.find_element(
                By.XPATH,
                "//li[contains(@class,'lm-Menu-item')][.//div[contains(@class,"
                f"'lm-Menu-itemLabel') and normalize-space(text())='{label}']]",
            ),
            10,
            f"no menu item {menu} > {label}",
            poll=0.2,
        )
        item.click()

    def run_cell(self, index: int) -> None:
        """Click into cell ``index`` and press Shift+Enter."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        cell = self.cells()[index]
        cell.find_element(self.By.CSS_SELECTOR, ".jp-InputArea-editor").click()
        ActionChains(self.d).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()

    def panel(self):
        """The notebook in the tab shown."""
        return self.d.find_element(
            self.By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
        )

    def cells(self):
        return self.panel().find_elements(self.By.CSS_SELECTOR, ".jp-Cell")

    def progress(self, cell: int | None = None) -> list[str]:
        """The states shown by the progress displays (of one cell, or all)."""
        scope = self.cells()[cell] if cell is not None else self.panel()
        found = scope.find_elements(self.By.CSS_SELECTOR, ".swift-rules-progress")
        return [e.get_attribute("data-state") for e in found]

    def busy_cells(self) -> int:
        prompts = self.panel().find_elements(self.By.CSS_SELECTOR, ".jp-InputPrompt")
        return sum("*" in p.text for p in prompts)

    def errors(self) -> list[str]:
        found = self.panel().find_elements(
            self.By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.error']"
        )
        return [e.text for e in found]

    def shot(self, path: Path) -> Path:
        self.d.save_screenshot(str(path))
        if SCREENSHOTS:
            shutil.copy(path, Path(SCREENSHOTS) / path.name)
        return path


def test_agc_notebook_in_jupyterlab(lab, browser, root, tmp_path):
    """Run all cells of notebooks/agc.ipynb; the display shows the finished workflow
    (twice: the run and the rerun after a setting changed), the plots are shown."""
    agc = project(root, "agc")
    ui = Lab(browser, lab)
    ui.open("agc/notebooks/agc.ipynb")
    ui.menu("Run", "Run All Cells")
    ui.until(lambda: "running" in ui.progress() or "starting" in ui.progress(), 120,
             "no progress display")  # fmt: skip
    # The display of a running workflow, for the docs.
    ui.until(lambda: "running" in ui.progress(), 120, "the workflow did not start")
    ui.d.execute_script("arguments[0].scrollIntoView()", ui.cells()[3])
    ui.until(
        lambda: (
            ui.panel()
            .find_element(ui.By.CSS_SELECTOR, ".swift-rules-progress")
            .get_attribute("data-done")
            not in ("0", None)
        ),
        300,
        "no job finished",
    )
    ui.shot(tmp_path / "notebook-running.png")
    ui.until(lambda: ui.progress() == ["finished", "finished"] and not ui.busy_cells(), 900,
             "the notebook did not finish")  # fmt: skip
    ui.d.set_window_size(1400, 1900)  # the display, the fit and the first plots at once
    ui.d.execute_script("arguments[0].scrollIntoView()", ui.cells()[3])
    shot = ui.shot(tmp_path / "notebook-agc.png")
    print(f"screenshot: {shot}")
    ui.d.set_window_size(1400, 1000)
    assert not ui.errors(), ui.errors()
    images = ui.panel().find_elements(ui.By.CSS_SELECTOR, ".jp-RenderedImage img")
    assert len(images) >= 4, "plots not shown"  # postfit 4j1b, 4j2b, a hist plot, the figure
    assert all(img.get_attribute("naturalWidth") not in ("0", None) for img in images)
    assert "ttbar_norm" in ui.panel().find_element(ui.By.CSS_SELECTOR, ".swift-rules-fit").text
    assert (agc / "results" / "fit" / "fit_results.json").exists()


RESTART = [
    "import swift_rules.notebook as sn\n"
    'settings = {"data": {"generated": {"preset": "tiny"}}}\n'
    'wf = sn.run("..", profile="profiles/local", config=settings, cores=2)\n'
    "wf.display()",
    "import swift_rules.notebook as sn   # a new kernel: find the running workflow\n"
    'wf = sn.attach("..")\n'
    "wf.display()",
    "wf.stop()",
]


def test_restart_kernel_attach_and_stop(lab, browser, root, tmp_path):
    import nbformat

    work = project(root, "restart")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src) for src in RESTART]
    nbformat.write(nb, work / "notebooks" / "restart.ipynb")
    ui = Lab(browser, lab)
    ui.open("restart/notebooks/restart.ipynb")
    ui.run_cell(0)
    ui.until(lambda: ui.progress(0) == ["running"], 180, "the workflow did not start")
    record = json.loads((work / ".swift-rules" / "notebook" / "run.json").read_text())

    ui.menu("Kernel", "Restart Kernel\u2026")
    ui.until(
        lambda: ui.d.find_element(ui.By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"), 20,
        "no restart dialog", poll=0.2,
    ).click()  # fmt: skip
    ui.until(lambda: ui.kernel_status() != "Idle", 20, "the kernel did not restart", poll=0.1)
    ui.until(lambda: ui.kernel_status() == "Idle", 120, "the kernel did not come back")
    from swift_rules.notebook import state

    assert state.is_our_run(record, work / ".swift-rules" / "notebook"), (
        "the run died with its kernel"
    )

    ui.run_cell(1)
    ui.until(lambda: ui.progress(1) == ["running"], 60, "no display of the running workflow")
    ui.until(lambda: ui.cells()[1].find_element(
        ui.By.CSS_SELECTOR, ".swift-rules-progress").get_attribute("data-done") != "0", 300,
        "no job finished after the restart")  # fmt: skip
    ui.shot(tmp_path / "notebook-attached.png")
    ui.run_cell(2)
    ui.until(lambda: ui.progress(1) == ["stopped"], 120, "the display did not show the stop")
    ui.until(lambda: not ui.busy_cells(), 120, "stop() did not return")
    assert ui.progress(2) == ["stopped"]  # what stop() returned: the status, shown
    assert not ui.errors(), ui.errors()
    ui.shot(tmp_path / "notebook-stopped.png")
    assert not state.is_our_run(record, work / ".swift-rules" / "notebook")
    # Nothing half-written: no temporary output left, every result readable; and no
    # process of the run left (Snakemake cancelled its jobs).
    assert not [p for p in work.rglob(".tmp-*")], "a half-written output was left"
    from swift_rules.results import load_meta

    for path in (work / "results").rglob("*.pkl"):
        load_meta(path)
    deadline = time.monotonic() + 20
    while _processes_in(work) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_in(work)


def _processes_in(folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cwd = Path(os.readlink(proc / "cwd"))
            except OSError:
                continue
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            if (cwd == folder or folder in cwd.parents) and "jupyter" not in cmd:
                found.append(int(proc.name))
    return found


def test_dask_dashboard_through_jupyterlab(lab, browser, monkeypatch):
    """A stage job's Dask dashboard, linked through the JupyterLab server: the page a
    user gets by following the link is Dask's."""
    pytest.importorskip("bokeh")
    from distributed import LocalCluster

    import swift_rules.notebook as sn

    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    with LocalCluster(n_workers=0, dashboard_address="127.0.0.1:0", processes=False) as cluster:
        link = sn.dashboard_link(cluster.dashboard_link)
        assert link.startswith("/proxy/") and link.endswith("/status")
        browser.get(lab["url"] + link)
        ui = Lab(browser, lab)
        ui.until(lambda: "Dask" in browser.title, 60, "the dashboard did not load")


# -- nbclient ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["agc", "htautau"])
def test_notebook_runs_under_nbclient(name, root):
    """The notebook, as stored, runs from top to bottom (after the browser test, the
    AGC one finds its results cached: a no-op run, then the same rerun check)."""
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    work = (
        root / "agc" if name == "agc" and (root / "agc").exists() else project(root, f"nb-{name}")
    )
    nb = nbformat.read(work / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3",
        resources={"metadata": {"path": str(work / "notebooks")}},
    ).execute()  # fmt: skip
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot shown"
    widgets = [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(widgets) == 2  # the progress display of the run and of the rerun
