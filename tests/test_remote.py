"""Remote inputs against a real XRootD server on loopback: root:// reads, an XCache in
front, URL rewriting, the stage-in rule, and a file or server that goes away."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import REPO, run_cli, snakemake_exe

from swift_rules.results import load_result
from swift_rules.runner import InputError, run_stage
from swift_rules.workflow import Plan
from swift_rules.xrootd_server import XRootDServer

SAMPLES = ("ttbar__nominal", "wjets__nominal")
# The XRootD client retries a refused connection for minutes by default; once is enough
# on loopback (set for the jobs' processes and, through EnvPutInt, for this one).
CLIENT_ENV = {"XRD_CONNECTIONRETRY": "1"}


def _need_xrootd() -> None:
    if shutil.which("xrootd") is None:
        message = "no xrootd program: install Debian's xrootd-server (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def base():
    """A folder the unprivileged xrootd can reach (pytest's tmp_path is private to root)."""
    _need_xrootd()
    from XRootD import client

    client.EnvPutInt("ConnectionRetry", 1)
    path = Path(tempfile.mkdtemp(prefix="swift-rules-xrootd-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def origin(base, tiny_dataset):
    """A data server serving copies of two samples' generated files."""
    for sample in SAMPLES:
        (base / "data" / sample).mkdir(parents=True)
        for path in tiny_dataset[sample]:
            shutil.copy(path, base / "data" / sample)
    server = XRootDServer(base / "data", base / "origin", http=True).start()
    yield server
    server.stop()


def served(server: XRootDServer, sample: str) -> list[str]:
    return sorted(str(p) for p in (server.root / sample).glob("*.root"))


def origin_requests(server: XRootDServer, since: int = 0) -> list[str]:
    """Opens and reads the server logged, from log line ``since`` on."""
    lines = server.log_text().splitlines()[since:]
    return [ln for ln in lines if "Xrootd_Protocol:" in ln and (" open " in ln or "read" in ln)]


def histograms(output, sample):
    h = output["hists"][sample]
    return h.view(flow=True).value, h.view(flow=True).variance


def run(files, out, sample="ttbar__nominal"):
    return run_stage(
        "agc::ttbar", sample, files, out, stage_config={"chunksize": 1500}, progress=False
    )


def test_rewrite_rules_cache_prefix_and_stage_in_paths(tmp_path):
    eos = "root://eospublic.cern.ch//eos/opendata/cms/upload/agc/1.0.0"
    remote = {
        "rewrite": [
            {"prefix": "https://xrootd-local.unl.edu:1094//store/user/AGC", "replace": eos},
            {"prefix": "never", "replace": "used"},
        ]
    }
    config = {
        "data": {"source": "fileset", "fileset": "agc", "max_files_per_sample": 1},
        "stages": {},
    }
    config["data"]["remote"] = remote
    plan = Plan(config)
    path = plan.datasets["ttbar__nominal"].files[0].path
    assert path.startswith(eos + "/nanoAOD/TT_TuneCUETP8M1_13TeV-powheg-pythia8/")
    assert plan.local_inputs("ttbar__nominal", 0) == []

    config["data"]["remote"] = {**remote, "cache_prefix": "root://xcache.example:1094"}
    path = Plan(config).datasets["ttbar__nominal"].files[0].path
    assert path.startswith("root://xcache.example:1094//" + eos + "/nanoAOD/")

    # A local mirror: the files become local inputs that Snakemake tracks.
    mirror = {"prefix": "https://xrootd-local.unl.edu:1094//store/user/AGC", "replace": "/m"}
    config["data"]["remote"] = {"rewrite": [mirror]}
    plan = Plan(config)
    assert plan.local_inputs("ttbar__nominal", 0)[0].startswith("/m/nanoAOD/")

    config["data"]["remote"] = {"stage_in": "staged/"}
    plan = Plan(config)
    (local,) = plan.local_inputs("ttbar__nominal", 0)
    assert local.startswith("staged/xrootd-local.unl.edu_1094/store/user/AGC/nanoAOD/")
    assert plan.staged_url(local).startswith("https://xrootd-local.unl.edu:1094//store/")


def test_invalid_remote_settings_name_the_key():
    config = {"data": {"remote": {"cache_prefix": "https://cache"}}, "stages": {}}
    with pytest.raises(ValueError, match=r"data\.remote\.cache_prefix"):
        Plan(config)


def test_stage_over_root_and_http_urls_matches_local_files(origin, tmp_path):
    local = served(origin, "ttbar__nominal")
    out_local, meta_local = run(local, tmp_path / "local.pkl")
    expected = histograms(out_local, "ttbar__nominal")
    # root:// through the XRootD client; http:// through fsspec's HTTP reader (the one
    # https:// uses), both served by the same xrootd.
    for name, urls in [
        ("root", [origin.url(p) for p in local]),
        ("http", [origin.http_url(p) for p in local]),
    ]:
        out, meta = run(urls, tmp_path / f"{name}.pkl")
        assert sorted(meta["entries"]) == urls
        assert meta["events"] == meta_local["events"] == {"ttbar__nominal": 8000}
        got = histograms(out, "ttbar__nominal")
        assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True)), name
    # The root:// reads went through the server, not around it.
    assert any(local[0].split("/data", 1)[1] in ln for ln in origin_requests(origin))


def test_second_iteration_is_served_by_the_cache(origin, base, tmp_path):
    """An XCache in forwarding mode (config cache_prefix) in front of the origin: the
    first pass fills it, the second reaches the origin not at all (its log says so)."""
    cache = XRootDServer(base / "cache", base / "cache-server", origin="=")
    with cache:
        remote = {"cache_prefix": f"root://{cache.address}"}
        local = served(origin, "ttbar__nominal")
        from swift_rules.remote import rewrite

        urls = [rewrite(origin.url(p), remote) for p in local]
        assert urls[0].startswith(f"root://{cache.address}//root://{origin.address}//")
        mark = len(origin.log_text().splitlines())
        cold, _ = run(urls, tmp_path / "cold.pkl")
        first = origin_requests(origin, mark)
        for path in local:
            name = path.split("/data", 1)[1]
            assert any(" open " in ln and name in ln for ln in first), f"no open of {name}"
        assert any("read" in ln for ln in first)

        mark = len(origin.log_text().splitlines())
        warm, _ = run(urls, tmp_path / "warm.pkl")
        assert origin_requests(origin, mark) == []
        # The cache holds the files, each with its .cinfo record.
        cached = sorted(p.name for p in (base / "cache").rglob("*.root"))
        assert cached == sorted(Path(p).name for p in local)
        for a, b in zip(histograms(cold, "ttbar__nominal"), histograms(warm, "ttbar__nominal")):
            assert np.array_equal(a, b)


# What a client can do to a server: list, upload, delete, read (root://), and GET, PUT,
# DELETE (XRootD's HTTP protocol). ARGV: root URL, HTTP URL, path to read and delete.
PROBE = r"""
import json, sys, urllib.request
from XRootD import client
from XRootD.client.flags import OpenFlags
root, http, path = sys.argv[1:4]
fs, done = client.FileSystem(root), {}
done["list"] = fs.dirlist("/")[0].ok
upload = client.File()
done["upload"] = upload.open(f"{root}//uploaded-by-a-stranger", OpenFlags.NEW)[0].ok
if done["upload"]:
    upload.write(b"x")
    upload.close()
reader = client.File()
done["read"] = reader.open(f"{root}/{path}")[0].ok and reader.read()[0].ok
done["delete"] = fs.rm(path)[0].ok
for method in ("GET", "PUT", "DELETE"):
    body = b"x" if method == "PUT" else None
    name = path if method != "PUT" else "/put-by-a-stranger"
    try:
        urllib.request.urlopen(urllib.request.Request(http + name, body, method=method), timeout=10)
        done[method] = True
    except Exception:
        done[method] = False
print(json.dumps(done))
"""


def _probe(root: str, http: str, path: str, prefix=()) -> dict:
    cmd = [*prefix, sys.executable, "-c", PROBE, root, http, path]
    env = {**os.environ, "XRD_CONNECTIONRETRY": "1", "XRD_REQUESTTIMEOUT": "10"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_servers_are_read_only_and_for_this_machine_only(origin, base, other_host):
    """No authentication, and xrootd listens on every interface: from another host (a
    network namespace, reaching this machine's non-loopback address) nothing is allowed;
    from this machine, reading only. A forwarding cache fetches only from its origins."""
    keep = origin.root / "keep.txt"
    keep.write_text("keep me\n")
    cache = XRootDServer(base / "cache-sec", base / "cache-sec-server", origin="=", http=True)
    try:
        with cache:
            through = f"/root://127.0.0.1:{origin.port}//keep.txt"
            servers = {"origin": (origin, "/keep.txt"), "cache": (cache, through)}
            for name, (server, path) in servers.items():
                far = other_host.host_ip
                outside = _probe(f"root://{far}:{server.port}", f"http://{far}:{server.http_port}",
                                 path, prefix=other_host.prefix)  # fmt: skip
                assert not any(outside.values()), f"{name}, from another host: {outside}"
                local = _probe(f"root://{server.address}", f"http://{server.http_address}", path)
                expected = {"read": True, "GET": True}
                assert {k: v for k, v in local.items() if v and k != "list"} == expected, local
            assert keep.read_text() == "keep me\n"
            assert not (origin.root / "uploaded-by-a-stranger").exists()
            # An origin the cache was not given: this machine's other address.
            stranger = f"/root://{other_host.host_ip}:{origin.port}//keep.txt"
            mark = len(origin.log_text().splitlines())
            assert _probe(f"root://{cache.address}", "", stranger)["read"] is False
            assert other_host.host_ip not in "".join(origin.log_text().splitlines()[mark:])
    finally:
        keep.unlink(missing_ok=True)


def test_missing_remote_file_is_one_clear_line(origin, tmp_path):
    url = origin.url("ttbar__nominal/vanished.root")
    proc = run_cli(
        "run", "agc::ttbar", "--sample", "ttbar__nominal", "--files", url,
        "--out", str(tmp_path / "out.pkl"), check=False, env=CLIENT_ENV,
    )  # fmt: skip
    assert proc.returncode != 0
    assert url in proc.stderr and "cannot be read" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out.pkl").exists()


def test_stage_in_of_a_missing_file_names_it_and_leaves_nothing(origin, tmp_path):
    url = origin.url("wjets__nominal/vanished.root")
    out = tmp_path / "copy" / "f.root"
    proc = run_cli("stage-in", url, "--out", str(out), check=False, env=CLIENT_ENV)
    assert proc.returncode != 0
    assert f"{url}: cannot be copied" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no partial copy


def test_server_gone_during_a_run_names_the_file(origin, base, tmp_path, monkeypatch):
    """The server is killed after the first chunk was processed: the next read fails."""
    local = served(origin, "ttbar__nominal")
    server = XRootDServer(origin.root, base / "short-lived").start()
    urls = [server.url(p) for p in local]
    pid = server.proc.pid  # the closure is pickled by coffea: an int, not the Popen
    import swift_rules.runner as runner

    real = runner._run_coffea

    def stop_after_first_chunk(proc, *args, **kwargs):
        process, chunks = proc.process, []

        def process_then_stop(events):
            out = process(events)
            chunks.append(len(events))
            if len(chunks) == 1:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            return out

        monkeypatch.setattr(proc, "process", process_then_stop)
        return real(proc, *args, **kwargs)

    monkeypatch.setattr(runner, "_run_coffea", stop_after_first_chunk)
    try:
        with pytest.raises(InputError, match="reading failed during the run") as err:
            run(urls, tmp_path / "out.pkl")
    finally:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            server.proc = None  # killed and reaped by the hook
        server.stop()
    assert any(u in str(err.value) for u in urls)
    assert not (tmp_path / "out.pkl").exists()


# -- the workflow ---------------------------------------------------------------------

SNAKEFILE = """
from swift_rules.workflow import rules_path

configfile: "config/config.yaml"

include: rules_path("stages.smk")
"""


def workflow(path: Path, origin: XRootDServer, **remote) -> Path:
    fileset = {}
    for sample in SAMPLES:
        process, variation = sample.split("__")
        files = [{"path": origin.url(p), "nevts": 0} for p in served(origin, sample)]
        fileset.setdefault(process, {})[variation] = {"files": files}
    (path / "config").mkdir(parents=True)
    (path / "fileset.json").write_text(json.dumps(fileset))
    config = {
        "data": {"source": "fileset", "fileset": "fileset.json", "files_per_group": 1,
                 "remote": remote},
        "stages": {"agc::ttbar": {"chunksize": 1500}},
    }  # fmt: skip
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "Snakefile").write_text(SNAKEFILE)
    return path


def snakemake(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    cmd = [
        snakemake_exe(), "--profile", str(REPO / "profiles" / "local"),
        "--directory", str(workdir), "--cores", "2", *targets,
    ]  # fmt: skip
    # The jobs run `swift-rules` from this environment (as under `make test`).
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, **CLIENT_ENV, "PATH": path}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


MERGED = "results/agc/ttbar/merged.pkl"
TTBAR_PARTIALS = [f"results/agc/ttbar/partial/ttbar__nominal/group{g:04d}.pkl" for g in (0, 1)]


@pytest.fixture(scope="module")
def outage(origin, tmp_path_factory):
    """A workflow over root:// URLs: the ttbar jobs run; then the wjets file vanishes
    from the server, and the whole workflow is asked for; then the file is back but the
    server stops, and again; then it runs with both back."""
    workdir = workflow(tmp_path_factory.mktemp("outage"), origin)
    ok(snakemake(workdir, *TTBAR_PARTIALS))
    done = {p: (workdir / p).stat().st_mtime_ns for p in TTBAR_PARTIALS}
    (wjets,) = served(origin, "wjets__nominal")
    log = workdir / "results/logs/agc/ttbar/wjets__nominal/group0000.log"
    failures = {}
    for what in ("vanished", "stopped"):
        try:
            if what == "vanished":
                os.rename(wjets, wjets + ".away")
            else:
                origin.stop()
            proc = snakemake(workdir, MERGED)
            failures[what] = (proc, log.read_text(), mtimes(workdir, TTBAR_PARTIALS))
        finally:
            if what == "vanished":
                os.rename(wjets + ".away", wjets)
            else:
                origin.start()
    rerun = ok(snakemake(workdir, MERGED))
    return workdir, done, failures, rerun


def mtimes(workdir: Path, paths) -> dict[str, int]:
    return {p: (workdir / p).stat().st_mtime_ns for p in paths}


@pytest.mark.slow
@pytest.mark.parametrize("what", ["vanished", "stopped"])
def test_workflow_keeps_finished_jobs_when_a_file_or_the_server_goes(origin, outage, what):
    """Jobs done before are kept; the failing job names its URL in one line; the run
    after the file or server is back runs only what is missing."""
    workdir, done, failures, rerun = outage
    proc, failed_log, kept = failures[what]
    assert proc.returncode != 0
    (wjets_url,) = [origin.url(p) for p in served(origin, "wjets__nominal")]
    assert f"{wjets_url}: cannot be read" in failed_log
    assert "Traceback" not in failed_log
    assert kept == done
    assert mtimes(workdir, TTBAR_PARTIALS) == done
    assert "swift_process" in rerun.stderr
    _, meta = load_result(workdir / MERGED)
    assert meta["events"] == {"ttbar__nominal": 8000, "wjets__nominal": 4000}


@pytest.mark.slow
def test_stage_in_rule_copies_once_and_gives_the_same_result(origin, outage, tmp_path):
    direct = outage[0]
    staged = workflow(tmp_path, origin, stage_in="remote-copies")
    first = ok(snakemake(staged, MERGED))
    assert first.stderr.count("rule swift_stage_in") == 3
    copies = sorted((staged / "remote-copies").rglob("*.root"))
    assert [p.name for p in copies] == sorted(
        Path(p).name for s in SAMPLES for p in served(origin, s)
    )
    assert all(
        p.read_bytes() == (origin.root / p.parent.name / p.name).read_bytes() for p in copies
    )
    out_direct, _ = load_result(direct / MERGED)
    out_staged, meta = load_result(staged / MERGED)
    assert all(f.startswith("remote-copies/127.0.0.1_") for f in meta["files"])
    for sample in SAMPLES:
        for a, b in zip(histograms(out_direct, sample), histograms(out_staged, sample)):
            assert np.array_equal(a, b)
    again = ok(snakemake(staged, MERGED))
    assert "Nothing to be done" in again.stdout + again.stderr
