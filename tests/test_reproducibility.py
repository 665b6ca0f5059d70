"""The same bytes every time: ROOT files written twice are identical, and their time is
SOURCE_DATE_EPOCH's. (Two clean runs of the workflow, the second on another executor,
give the same bytes: tests/test_workflow.py.)"""

from __future__ import annotations

import uproot


def test_a_root_file_is_the_same_bytes_every_time(tmp_path):
    import hist

    from swift_rules.rootfile import recreate

    h = hist.Hist.new.Reg(10, 0, 1, name="x").Weight()
    h.fill(x=[0.1, 0.5, 0.5])
    for name in ("a", "b"):
        with recreate(tmp_path / name / "h.root") as f:
            f["dir/h"] = h
    a, b = ((tmp_path / n / "h.root").read_bytes() for n in ("a", "b"))
    assert a == b
    with uproot.open(tmp_path / "a" / "h.root") as f:
        assert f["dir/h"].values().tolist() == h.values().tolist()


def test_source_date_epoch_is_the_time_written(tmp_path, monkeypatch):
    from swift_rules.rootfile import recreate, source_date

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date().isoformat() == "2023-11-14T22:13:20"
    with recreate(tmp_path / "late.root") as f:
        f["s"] = "x"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    with recreate(tmp_path / "late.root.default") as f:
        f["s"] = "x"
    assert (tmp_path / "late.root").read_bytes() != (tmp_path / "late.root.default").read_bytes()
