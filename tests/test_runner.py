"""The stage runner: executors, chunking, bad input, result records."""

from __future__ import annotations

import json
import shutil
import subprocess

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea import processor
from helpers import nanoaod_file, run_cli

from swift_rules.agc.normalise import EmptySampleError, normalised_histogram
from swift_rules.results import load_result
from swift_rules.runner import InputError, run_stage

SAMPLE = "ttbar__nominal"


def hists_of(output):
    return output["hists"][SAMPLE]


def assert_same_histograms(a, b, rel=0.0):
    """Counts (unit weights) exactly equal; weighted sums equal to ``rel``."""
    assert list(a.axes["variation"]) == list(b.axes["variation"])
    assert list(a.axes["region"]) == list(b.axes["region"])
    va, vb = a.view(flow=True), b.view(flow=True)
    nominal = a.axes["variation"].index("nominal")
    assert np.array_equal(va.value[..., nominal], vb.value[..., nominal])
    if rel == 0.0:
        assert np.array_equal(va.value, vb.value) and np.array_equal(va.variance, vb.variance)
    else:
        np.testing.assert_allclose(va.value, vb.value, rtol=rel, atol=0)
        np.testing.assert_allclose(va.variance, vb.variance, rtol=rel, atol=0)


def run(tmp_path, files, name, sample=SAMPLE, settings=None, executor=None, workers=1):
    out = tmp_path / f"{name}.pkl"
    output, meta = run_stage(
        "agc::ttbar",
        sample,
        files,
        out,
        stage_config=settings or {},
        executor=executor or {},
        workers=workers,
        progress=False,
        run_record=tmp_path / f"{name}.run.json",
    )
    assert load_result(out)[1] == meta
    return output, meta


def test_same_results_for_any_chunking_and_executor(tmp_path, tiny_dataset):
    files = tiny_dataset[SAMPLE]
    ref, meta = run(tmp_path, files, "ref", settings={"chunksize": 100_000})
    assert meta["events"] == {SAMPLE: 8000}
    assert meta["variant"] == "cpu" and meta["stage"] == "agc::ttbar"
    small, _ = run(tmp_path, files, "small", settings={"chunksize": 777})
    dask, dmeta = run(
        tmp_path,
        files,
        "dask",
        settings={"chunksize": 1500},
        executor={"type": "local"},
        workers=2,
    )
    assert run_record(tmp_path, "dask")["workers"] == 2
    assert_same_histograms(hists_of(ref), hists_of(small), rel=1e-12)
    assert_same_histograms(hists_of(ref), hists_of(dask), rel=1e-12)


def test_same_chunking_same_bits_in_process_and_on_dask(tmp_path, tiny_dataset):
    # Chunk outputs are added up in file and entry order on every executor.
    files = tiny_dataset[SAMPLE]
    alone, _ = run(tmp_path, files, "alone", settings={"chunksize": 1500})
    dask, _ = run(tmp_path, files, "dask2", settings={"chunksize": 1500},
                  executor={"type": "local"}, workers=2)  # fmt: skip
    assert_same_histograms(hists_of(alone), hists_of(dask), rel=0.0)
    assert (tmp_path / "alone.pkl").read_bytes() == (tmp_path / "dask2.pkl").read_bytes()


def test_two_runs_with_the_same_settings_are_bit_identical(tmp_path, tiny_dataset):
    files = tiny_dataset[SAMPLE]
    a, _ = run(tmp_path, files, "a", settings={"chunksize": 1000})
    b, _ = run(tmp_path, files, "b", settings={"chunksize": 1000})
    assert_same_histograms(hists_of(a), hists_of(b), rel=0.0)
    dask = {"type": "local"}
    c, _ = run(tmp_path, files, "c", settings={"chunksize": 1000}, executor=dask, workers=2)
    d, _ = run(tmp_path, files, "d", settings={"chunksize": 1000}, executor=dask, workers=2)
    assert_same_histograms(hists_of(c), hists_of(d), rel=0.0)


def test_a_files_tree_and_baskets_are_read_once_for_all_its_chunks(
    tmp_path, tiny_dataset, monkeypatch
):
    # coffea would deserialise the TTree again for every chunk, and decompress twice a
    # basket that a chunk boundary cuts (kept_files.py).
    from uproot.models.TBasket import Model_TBasket

    from swift_rules import kept_files

    trees, baskets = [], []
    get, read_basket = uproot.reading.ReadOnlyKey.get, Model_TBasket.read_members

    def counting_get(key):
        out = get(key)
        if key.fClassName == "TTree":
            trees.append(out)  # held, so that no id is reused
        return out

    def counting_read(basket, *args, **kwargs):
        baskets.append(basket)
        return read_basket(basket, *args, **kwargs)

    monkeypatch.setattr(uproot.reading.ReadOnlyKey, "get", counting_get)
    monkeypatch.setattr(Model_TBasket, "read_members", counting_read)
    files = tiny_dataset[SAMPLE]
    run(tmp_path, files, "whole", settings={"chunksize": 100_000})
    whole = len(baskets)
    trees.clear()
    baskets.clear()
    run(tmp_path, files, "kept", settings={"chunksize": 500})
    # Per file: the up-front check's read, then one TTree object for all of its chunks.
    assert len({id(t) for t in trees}) == 2 * len(files) and len(trees) > 4 * len(files)
    assert len(baskets) == whole  # every basket once, as in one chunk per file
    baskets.clear()
    monkeypatch.setattr(kept_files, "Runner", processor.Runner)  # coffea's own
    run(tmp_path, files, "coffea", settings={"chunksize": 500})
    assert len(baskets) > whole
    assert (tmp_path / "kept.pkl").read_bytes() == (tmp_path / "coffea.pkl").read_bytes()


def test_a_kept_file_is_the_one_chunked_and_few_stay_open(tiny_dataset):
    from swift_rules.kept_files import KEEP, close_kept_files, kept_file

    files = [f for sample in sorted(tiny_dataset) for f in tiny_dataset[sample]][: KEEP + 1]
    uuids = [uproot.open(f).file.fUUID for f in files]
    assert kept_file(files[0], bytes(16), "Events", None, {}) is None  # rewritten since
    opened = [kept_file(f, u, "Events", None, {}) for f, u in zip(files, uuids, strict=True)]
    assert opened[0].closed and not any(f.closed for f in opened[1:])
    assert kept_file(files[-1], uuids[-1], "Events", None, {}) is opened[-1]
    close_kept_files()
    assert all(f.closed for f in opened)


def test_a_kept_local_file_is_read_in_the_calling_thread(tiny_dataset, monkeypatch):
    """Not through fsspec's event-loop thread: a hand-over per column read made
    coffea's reading 1.5x slower (docs/benchmarks.md)."""
    import threading

    from uproot.source.file import FileResource

    from swift_rules.kept_files import close_kept_files, kept_file

    readers, plain_get = [], FileResource.get

    def get(self, *args):
        readers.append(threading.get_ident())
        return plain_get(self, *args)

    monkeypatch.setattr(FileResource, "get", get)
    path = tiny_dataset[SAMPLE][0]
    kept = kept_file(path, uproot.open(path).file.fUUID, "Events", None, {})
    try:
        kept["Events"]["Jet_pt"].array(entry_start=0, entry_stop=10)
    finally:
        close_kept_files()
    assert readers and set(readers) == {threading.get_ident()}


def test_existing_scheduler_address(tmp_path, tiny_dataset):
    from distributed import LocalCluster

    files = tiny_dataset[SAMPLE]
    ref, _ = run(tmp_path, files, "ref", settings={"chunksize": 1000})
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        executor = {"type": "address", "address": cluster.scheduler_address}
        out, meta = run(tmp_path, files, "addr", settings={"chunksize": 1000}, executor=executor)
    assert run_record(tmp_path, "addr")["executor"]["address"] == cluster.scheduler_address
    # A Dask tree reduction adds chunks in another order than the in-process loop.
    assert_same_histograms(hists_of(ref), hists_of(out), rel=1e-12)


def test_unreachable_scheduler_is_a_clear_error(tmp_path, tiny_dataset):
    from swift_rules.backends import ClusterError

    executor = {"type": "address", "address": "tcp://127.0.0.1:9", "connect_timeout": 2}
    with pytest.raises(ClusterError, match=r"tcp://127\.0\.0\.1:9"):
        run(tmp_path, tiny_dataset[SAMPLE], "x", executor=executor)
    assert not (tmp_path / "x.pkl").exists()


def run_record(tmp_path, name) -> dict:
    return json.loads((tmp_path / f"{name}.run.json").read_text())


def test_record_of_the_run(tmp_path, tiny_dataset):
    _, meta = run(tmp_path, tiny_dataset[SAMPLE], "rec")
    for key in ("code_fingerprint", "config", "files", "entries", "software",
                "variant_target"):  # fmt: skip
        assert key in meta, key
    assert meta["software"]["coffea"]
    # How and where it ran is in the run record, not in the result: the result's bytes
    # do not depend on the executor, the host or the time.
    for key in ("executor", "workers", "host", "wall_time_s", "events_per_s", "started"):
        assert key not in meta and key in run_record(tmp_path, "rec"), key
    assert run_record(tmp_path, "rec")["device_reason"]
    assert sorted(meta["entries"]) == sorted(tiny_dataset[SAMPLE])


def test_missing_branch_names_file_and_branch(tmp_path, tiny_dataset):
    path = tiny_dataset[SAMPLE][0]
    settings = {"options": {"btag_branch": "btagNoSuchTagger"}}
    with pytest.raises(InputError) as err:
        run(tmp_path, [path], "m", settings=settings)
    assert path in str(err.value) and "Jet_btagNoSuchTagger" in str(err.value)
    assert not (tmp_path / "m.pkl").exists()


def test_real_nanoaod_v12_without_btagcsvv2(tmp_path):
    path = str(nanoaod_file("nano_tt_v12.root"))
    with pytest.raises(InputError, match="Jet_btagCSVV2"):
        run(tmp_path, [path], "v12")
    settings = {"options": {"btag_branch": "btagDeepFlavB", "btag_threshold": 0.3}}
    out, meta = run(tmp_path, [path], "v12", settings=settings)
    assert meta["events"] == {SAMPLE: 200}
    h = hists_of(out)
    assert h[:, "4j2b", "ttbar", "nominal"].values().sum() > 0


def test_real_nanoaod_dy_file(tmp_path):
    path = str(nanoaod_file("nano_dy.root"))
    out, meta = run(tmp_path, [path], "dy", sample="wjets__nominal")
    assert meta["events"] == {"wjets__nominal": 40}


def truncated_copy(src, dst, fraction=0.5):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[: int(len(data) * fraction)])
    return str(dst)


def test_truncated_file_is_named_or_skipped(tmp_path, tiny_dataset):
    good, other = tiny_dataset[SAMPLE]
    bad = truncated_copy(other, tmp_path / "truncated.root")
    with pytest.raises(InputError) as err:
        run(tmp_path, [good, bad], "t")
    assert bad in str(err.value) and "skip_bad_files" in str(err.value)

    out, meta = run(tmp_path, [good, bad], "t", executor={"skip_bad_files": True})
    assert meta["skipped_files"] == [bad]
    assert meta["events"] == {SAMPLE: 4000}  # the skipped file is not counted
    alone, _ = run(tmp_path, [good], "alone")
    assert_same_histograms(hists_of(out), hists_of(alone))


def test_garbage_file_is_named(tmp_path):
    bad = tmp_path / "garbage.root"
    bad.write_bytes(b"this is not a ROOT file" * 100)
    with pytest.raises(InputError, match="garbage.root"):
        run(tmp_path, [str(bad)], "g")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="no_such_file.root"):
        run(tmp_path, [str(tmp_path / "no_such_file.root")], "n")


def test_sample_without_events_gives_a_clear_message(tmp_path):
    from swift_rules.agc.generate import generate_file

    empty = tmp_path / "empty.root"
    assert generate_file(empty, "single_top_s_chan", "nominal", 0) == 0
    out, meta = run(tmp_path, [str(empty)], "e", sample="single_top_s_chan__nominal")
    assert meta["events"] == {"single_top_s_chan__nominal": 0}
    with pytest.raises(EmptySampleError, match="single_top_s_chan__nominal"):
        normalised_histogram(out, meta["events"])


def test_normalisation_uses_events_processed(tmp_path, tiny_dataset):
    out, meta = run(tmp_path, tiny_dataset[SAMPLE][:1], "one")
    h = normalised_histogram(out, meta["events"])
    raw = hists_of(out)
    w = (396.87 + 332.97) * 3378 / 4000  # the AGC's ttbar cross section
    np.testing.assert_allclose(h.values(), raw.values() * w, rtol=1e-12)
    np.testing.assert_allclose(h.variances(), raw.variances() * w * w, rtol=1e-12)


def test_cli_run_and_merge(tmp_path, tiny_dataset):
    files = tiny_dataset[SAMPLE]
    for i, f in enumerate(files):
        run_cli(
            "run",
            "agc::ttbar",
            "--sample",
            SAMPLE,
            "--files",
            f,
            "--workers",
            "1",
            "--out",
            str(tmp_path / f"p{i}.pkl"),
        )
    run_cli(
        "merge",
        str(tmp_path / "p0.pkl"),
        str(tmp_path / "p1.pkl"),
        "--out",
        str(tmp_path / "m.pkl"),
    )
    merged, meta = load_result(tmp_path / "m.pkl")
    whole, _ = run(tmp_path, files, "whole")
    assert meta["events"] == {SAMPLE: 8000} and meta["parts"] == 2
    assert_same_histograms(hists_of(merged), hists_of(whole), rel=1e-12)


def test_cli_reports_user_errors_without_traceback(tmp_path, tiny_dataset):
    proc = run_cli(
        "run",
        "agc::nope",
        "--sample",
        SAMPLE,
        "--files",
        tiny_dataset[SAMPLE][0],
        "--out",
        str(tmp_path / "x.pkl"),
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown stage 'agc::nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    from swift_rules.atomic import atomic_path

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)


def test_progress_lines_for_log_files(caplog):
    # Through the module's logger: `swift-rules run` prints them on stderr as
    # "[swift-rules] s__v: 10/30 events (33%), ..." (swift_rules.cli.log_to_stderr).
    import logging

    from swift_rules.runner import ProgressLog

    caplog.set_level(logging.INFO, logger="swift_rules.runner")

    class Proc:
        def process(self, events):
            return {"n": len(events)}

        def postprocess(self, acc):
            return acc

    wrapped = ProgressLog(Proc(), total=30, label="s__v", interval=0.0)
    assert wrapped([0] * 10) == {"n": 10}
    wrapped([0] * 20)
    err = caplog.text
    assert "s__v: 10/30 events (33%)" in err and "30/30 events (100%)" in err
    assert wrapped.postprocess({"n": 1}) == {"n": 1}


def test_real_nanoaod_v15_without_jet_id_recomputes_it(tmp_path):
    # NanoAOD v15 has no Jet_jetId: the stage recomputes it by JetMET's recipe and says so.
    from helpers import coffea_sample

    from swift_rules.agc.jet_id import JET_ID_INPUTS, tight_lepton_veto_id

    path = str(coffea_sample("nano_tt_v15.root"))
    with uproot.open(path) as f:
        assert "Jet_jetId" not in f["Events"].keys()
        jets = {c: ak.to_numpy(ak.flatten(f["Events"][f"Jet_{c}"].array())) for c in JET_ID_INPUTS}
    settings = {"options": {"btag_branch": "btagDeepFlavB", "btag_threshold": 0.3}}
    out, meta = run(tmp_path, [path], "v15", settings=settings)
    assert meta["events"] == {SAMPLE: 200}
    assert meta["notes"] == {"jet_id_recomputed": [path]}
    # The ID the selection sees is the recipe's (this sample has no single-lepton event
    # that passes the AGC's cuts, so its histograms are empty: that is the sample).
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from swift_rules.agc.ttbar import TtbarProcessor

    events = NanoEventsFactory.from_root({path: "Events"}, schemaclass=NanoAODSchema,
                                         mode="eager").events()  # fmt: skip
    seen = TtbarProcessor(btag_branch="btagDeepFlavB").columns(events)["Jet"]["jetId"]
    ids = tight_lepton_veto_id(jets)
    assert np.array_equal(seen, ids)
    # The recipe by hand, jet by jet, against the vectorised one.
    for i in range(len(ids)):
        eta = abs(jets["eta"][i])
        j = {c: jets[c][i] for c in JET_ID_INPUTS}
        if eta <= 2.6:
            tight = (j["neHEF"] < 0.99 and j["neEmEF"] < 0.9 and j["chHEF"] > 0.01
                     and int(j["chMultiplicity"]) + int(j["neMultiplicity"]) > 1
                     and j["chMultiplicity"] > 0)  # fmt: skip
        elif eta <= 2.7:
            tight = j["neHEF"] < 0.90 and j["neEmEF"] < 0.99
        elif eta <= 3.0:
            tight = j["neHEF"] < 0.99
        else:
            tight = j["neMultiplicity"] >= 2 and j["neEmEF"] < 0.4
        veto = tight and (eta > 2.7 or (j["muEF"] < 0.8 and j["chEmEF"] < 0.8))
        assert ids[i] == (6 if veto else 2 if tight else 0), i
    assert {0, 6} <= set(ids.tolist())


def test_a_file_with_neither_jet_id_nor_its_inputs_is_named(tmp_path):
    from swift_rules.inputs import missing_branches

    text = missing_branches([[("Jet_jetId",), ("Jet_chHEF", "Jet_neHEF")]], {"Jet_neHEF"})
    assert text == ["Jet_jetId (or: Jet_chHEF)"]


def test_the_branches_read_are_preloaded_as_the_file_has_them():
    """What coffea preloads per chunk: the first complete choice of each alternative
    (not every recipe input a file happens to have too), the counters, nothing absent."""
    from swift_rules.inputs import branches_read

    required = ["event", "Jet_pt", [("Jet_jetId",), ("Jet_chHEF", "Jet_neHEF")], "Muon_pt"]
    with_id = {"event", "nJet", "Jet_pt", "Jet_jetId", "Jet_chHEF", "Jet_neHEF", "Muon_pt"}
    assert branches_read(required, with_id) == {"event", "nJet", "Jet_pt", "Jet_jetId",
                                                "Muon_pt"}  # fmt: skip
    recipe_only = with_id - {"Jet_jetId"}
    assert branches_read(required, recipe_only) == {"event", "nJet", "Jet_pt", "Jet_chHEF",
                                                    "Jet_neHEF", "Muon_pt"}  # fmt: skip


# -- another user of the machine ---------------------------------------------------------

# The victim's stage job: a local Dask cluster (threads > 1), up until told to stop.
VICTIM_CLUSTER = r"""
import sys
from swift_rules.backends import dask_client
with dask_client({"type": "local"}, 2) as client:
    print(client.scheduler.address, flush=True)
    sys.stdin.readline()
"""

# The attacker: the victim's listening ports from /proc/net/tcp (it shows the owner's
# uid). HTTP ones: the scheduler's info pages. The others: a Dask client on each, without
# and with a TLS certificate of its own, asking the workers and scheduler to run os.getuid.
ATTACKER = r"""
import asyncio, json, os, socket, sys
from distributed import Client
from distributed.security import Security
uid, ports = int(sys.argv[1]), set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[7]) == uid:  # LISTEN, the victim's
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
print("ports", json.dumps(sorted(ports)), flush=True)

def http(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        try:
            return sock.recv(100).decode(errors="replace").split("\r\n")[0]
        except OSError:  # a TLS port hangs up, or waits
            return ""

async def dask(scheme, port, security):
    client = Client(f"{scheme}://127.0.0.1:{port}", asynchronous=True, timeout=3,
                    security=security)
    try:
        await asyncio.wait_for(client, 10)
        ran = await asyncio.wait_for(client.run(os.getuid), 10)
        return f"ran {scheme} {port} {ran}"
    except BaseException as err:
        return f"refused {scheme} {port} {type(err).__name__}"
    finally:
        try:
            await asyncio.wait_for(client.close(), 5)
        except BaseException:
            pass

for port in sorted(ports):
    if http(port, "/health").startswith("HTTP/"):
        print("http", port, http(port, "/json/identity.json"), flush=True)
        continue
    for scheme, security in (("tcp", None), ("tls", Security.temporary())):
        print(asyncio.run(dask(scheme, port, security)), flush=True)
"""


def test_other_users_cannot_use_a_local_dask_cluster(victim_and_attacker):
    """A stage job with threads > 1 runs a local Dask cluster on loopback ports. Another
    user finds them (/proc/net/tcp) and connects a client: refused, with or without a
    TLS certificate of their own."""
    victim, attacker = victim_and_attacker
    cluster = victim.popen(*victim.python, "-c", VICTIM_CLUSTER, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("tls://127.0.0.1:"), address
        probe = attacker.py(ATTACKER, str(victim.uid), timeout=240)
    finally:
        cluster.communicate("stop\n", timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    lines = probe.stdout.splitlines()
    found = json.loads(lines[0].removeprefix("ports "))
    assert int(address.rsplit(":", 1)[1]) in found, probe.stdout  # the scheduler, found
    ran = [line for line in lines if line.startswith("ran ")]
    assert not ran, f"another user ran code in the victim's cluster: {ran}"
    http = [line for line in lines if line.startswith("http ")]
    assert http and all(line.endswith(" 404 Not Found") for line in http), http
    assert cluster.returncode == 0


def test_a_threads_local_cluster_has_no_port(tmp_path, tiny_dataset):
    """processes: false: the workers are threads of the job, talking in-process."""
    from swift_rules.backends import dask_client

    with dask_client({"type": "local", "processes": False}, 2) as client:
        assert client.scheduler.address.startswith("inproc://")


def test_result_records_and_printed_settings_hold_no_secret(tmp_path, tiny_dataset):
    """Partial results (and `swift-rules info`, the provenance file) are shared: the
    executor settings they record show a token given in them as <redacted>, and keep
    what is no secret (a token file's path). So does `swift-rules validate --show`."""
    secret = "s3cret-broker-token-0123456789"
    env = {"DASK_BROKER_TOKEN": secret, "OMP_NUM_THREADS": "1"}
    broker = {"token_file": "/private/broker.token"}
    executor = {"type": "iterative", "kubernetes": {"env": env}, "broker": broker}
    _, meta = run(tmp_path, tiny_dataset[SAMPLE][:1], "r", executor=executor)
    record = run_record(tmp_path, "r")
    assert record["executor"]["kubernetes"]["env"] == {"DASK_BROKER_TOKEN": "<redacted>",
                                                       "OMP_NUM_THREADS": "1"}  # fmt: skip
    assert record["executor"]["broker"] == {"token_file": "/private/broker.token"}
    assert secret.encode() not in (tmp_path / "r.pkl").read_bytes()
    assert secret not in (tmp_path / "r.run.json").read_text()
    assert secret not in run_cli("info", str(tmp_path / "r.pkl")).stdout
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"executor": executor}))
    shown = run_cli("validate", str(config), "--show").stdout
    assert secret not in shown and "<redacted>" in shown
