"""Real-world inputs: files damaged inside (not at their end), empty and odd files.

The damaged files are made here from a generated one: a basket of one branch zeroed
in the middle of the file, a basket whose compression header lies about its sizes,
and a file cut in the middle of a basket.
"""

from __future__ import annotations

import shutil

import awkward as ak
import numpy as np
import pytest
import uproot

from swift_rules.runner import InputError, run_stage

SAMPLE = "ttbar__nominal"
EVENTS, BASKET = 12_000, 2_000  # six baskets of 2000 entries per branch
CHUNK = 3_000


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    from swift_rules.agc.generate import generate_file

    path = tmp_path_factory.mktemp("damage") / "good.root"
    generate_file(path, "ttbar", "nominal", EVENTS, chunk_size=BASKET, seed=3)
    return path


def basket(path, branch="Jet_pt", index=3):
    b = uproot.open(path)["Events"][branch]
    return int(b.member("fBasketSeek")[index]), int(b.member("fBasketBytes")[index])


def zeroed_basket(good, out):
    seek, size = basket(good)
    data = bytearray(good.read_bytes())
    data[seek + 100 : seek + size - 10] = bytes(size - 110)  # keep the key, zero the payload
    out.write_bytes(data)
    return str(out)


def lying_header(good, out):
    seek, _ = basket(good)
    data = bytearray(good.read_bytes())
    key_length = int.from_bytes(data[seek + 16 : seek + 18], "big")
    # The 9-byte compression header: its uncompressed size now claims 1 MB.
    data[seek + key_length + 6 : seek + key_length + 9] = (10**6).to_bytes(3, "little")
    out.write_bytes(data)
    return str(out)


def cut_in_a_basket(good, out):
    seek, size = basket(good)
    shutil.copy(good, out)
    with open(out, "r+b") as fh:
        fh.truncate(seek + size // 2)
    return str(out)


def run(tmp_path, files, name, workers=1, **kwargs):
    return run_stage("agc::ttbar", SAMPLE, [str(f) for f in files], tmp_path / f"{name}.pkl",
                     stage_config={"chunksize": CHUNK}, workers=workers, progress=False,
                     executor={"type": "local"} if workers > 1 else {}, **kwargs)  # fmt: skip


@pytest.mark.parametrize("damage", [zeroed_basket, lying_header])
def test_a_damaged_basket_is_one_line_naming_file_branch_and_entries(tmp_path, good, damage):
    bad = damage(good, tmp_path / f"{damage.__name__}.root")
    with pytest.raises(InputError) as err:
        run(tmp_path, [bad], "x")
    text = str(err.value)
    assert text.startswith(f"{bad}: entries 6000-8999 cannot be read: branch Jet_pt, entries "
                           "6000-7999 (basket 3)")  # fmt: skip
    assert "\n" not in text and "skip_bad_files" in text
    assert not (tmp_path / "x.pkl").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_skip_bad_files_leaves_out_only_the_unreadable_chunk(tmp_path, good, workers):
    bad = zeroed_basket(good, tmp_path / "zeroed.root")
    output, meta = run(tmp_path, [bad], "skip", workers=workers, skip_bad_files=True)
    # The chunk of entries 6000-8999 holds the damaged basket: the other three count.
    assert meta["events"] == {SAMPLE: EVENTS - CHUNK} == meta["source_events"]
    assert meta["entries"] == {bad: EVENTS - CHUNK}
    assert list(meta["damaged_chunks"]) == [f"{bad}: entries 6000-8999"]
    assert "branch Jet_pt" in meta["damaged_chunks"][f"{bad}: entries 6000-8999"]
    # The histograms hold the kept chunks only: fewer entries than the whole file's.
    h = output["hists"][SAMPLE]
    ref, _ = run(tmp_path, [good], "ref")
    nominal = h.axes["variation"].index("nominal")
    kept, whole = (x["hists"][SAMPLE].values()[..., nominal].sum() for x in (output, ref))
    assert 0 < kept < whole


def test_a_file_cut_in_a_basket_is_found_up_front(tmp_path, good):
    bad = cut_in_a_basket(good, tmp_path / "cut.root")
    with pytest.raises(InputError, match=r"cut\.root: cannot be read .*truncated"):
        run(tmp_path, [bad], "cut")
    _, meta = run(tmp_path, [good, bad], "cut", skip_bad_files=True)
    assert meta["skipped_files"] == [bad] and meta["events"] == {SAMPLE: EVENTS}


def test_a_dataset_whose_files_hold_no_events(tmp_path):
    # A tree with no entries but its full branch metadata, and an export of it.
    from swift_rules.agc.generate import generate_file
    from swift_rules.export import ExportError, export

    empty = tmp_path / "empty.root"
    generate_file(empty, "wjets", "nominal", 0)
    assert uproot.open(empty)["Events"].num_entries == 0
    assert "Jet_pt" in uproot.open(empty)["Events"].keys()
    out = tmp_path / "e.pkl"
    _, meta = run_stage("agc::ttbar", "wjets__nominal", [str(empty)], out, progress=False)
    assert meta["events"] == {"wjets__nominal": 0}
    with pytest.raises(ExportError, match="'wjets__nominal': no events were processed"):
        export([str(out)], {str(out): {"name": "wjets__nominal", "xsec": 1.0}},
               tmp_path / "h.root", stage="agc::ttbar", luminosity=1.0)  # fmt: skip


def test_an_rntuple_events_is_read_like_a_ttree(tmp_path):
    # CMS moves NanoAOD to RNTuple; uproot >= 5.7 writes one for f["Events"] = array.
    n = 2000
    rng = np.random.default_rng(2)
    counts = rng.integers(0, 7, n)
    pt = ak.unflatten(rng.exponential(40, counts.sum()).astype(np.float32), counts)
    zeros = pt * 0
    columns = {
        "run": np.ones(n, np.uint32), "luminosityBlock": np.ones(n, np.uint32),
        "event": np.arange(1, n + 1, dtype=np.uint64), "nJet": counts.astype(np.int32),
        "Jet_pt": pt, "Jet_eta": zeros, "Jet_phi": zeros, "Jet_mass": zeros,
    }  # fmt: skip
    path = tmp_path / "rntuple.root"
    with uproot.recreate(path) as f:
        f["Events"] = ak.zip(columns, depth_limit=1)
    assert "RNTuple" in type(uproot.open(path)["Events"]).__name__
    (tmp_path / "jet_sum.py").write_text(
        "import awkward as ak\nfrom coffea import processor\n\n\n"
        "class JetSum(processor.ProcessorABC):\n"
        "    def process(self, events):\n"
        "        return {'pt': float(ak.sum(events.Jet.pt)), 'n': len(events)}\n\n"
        "    def postprocess(self, a):\n        return a\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    from swift_rules.registry import StageRegistry

    registry = StageRegistry(builtins=False)
    registry.register("t::sum", cpu="jet_sum:JetSum", source="test")
    output, meta = run_stage("t::sum", "d", [str(path)], tmp_path / "r.pkl", registry=registry,
                             stage_config={"chunksize": 700}, progress=False)  # fmt: skip
    assert meta["events"] == {"d": n} and output["n"] == n
    assert output["pt"] == pytest.approx(float(ak.sum(pt)), rel=1e-6)


def test_real_nanoaod_as_rntuple_equals_the_same_file_as_a_ttree(tmp_path):
    # coffea's test sample, stored both ways: the AGC stage gives the same histograms.
    from helpers import coffea_sample

    outputs = []
    for name in ("nano_dy.root", "nano_dy_rntuple.root"):
        output, meta = run_stage("agc::ttbar", "wjets__nominal", [str(coffea_sample(name))],
                                 tmp_path / f"{name}.pkl", progress=False)  # fmt: skip
        assert meta["events"] == {"wjets__nominal": 40}
        outputs.append(output["hists"]["wjets__nominal"])
    ttree, rntuple = outputs
    assert np.array_equal(ttree.view(flow=True).value, rntuple.view(flow=True).value)
    assert np.array_equal(ttree.view(flow=True).variance, rntuple.view(flow=True).variance)


def test_real_empty_nanoaod_file(tmp_path):
    from helpers import coffea_sample

    _, meta = run_stage("agc::ttbar", "wjets__nominal", [str(coffea_sample("nano_dy_empty.root"))],
                        tmp_path / "empty.pkl", progress=False)  # fmt: skip
    assert meta["events"] == {"wjets__nominal": 0}
