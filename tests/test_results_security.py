"""Result files and outputs in folders other users can write (a group folder, a REANA
workspace): nothing another user planted is unpickled, followed or written through."""

from __future__ import annotations

import os
import pickle
import stat

import pytest
from helpers import run_cli

from swift_rules.atomic import write_bytes, write_text
from swift_rules.remote import RemoteError, staged_path
from swift_rules.results import MAGIC, ResultError, load_meta, load_result, save_result

OTHER_UID = 65534  # nobody

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


class Payload:
    """Unpickling this runs code: it creates the file named by ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def planted_result(path, marker):
    """A result file as an attacker would write it: a valid record, a hostile pickle."""
    record = b'{"events": {"ttbar": 1}, "stage": "agc::ttbar"}'
    path.write_bytes(MAGIC + record + b"\n" + pickle.dumps(Payload(str(marker))))
    return path


@needs_root
def test_a_result_owned_by_another_user_is_never_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    path = planted_result(tmp_path / "group0000.pkl", marker)
    os.chown(path, OTHER_UID, OTHER_UID)
    with pytest.raises(ResultError, match=r"belongs to uid 65534, not to you"):
        load_result(path)
    proc = run_cli("merge", str(path), "--out", str(tmp_path / "merged.pkl"), check=False)
    assert proc.returncode == 2 and "belongs to uid 65534" in proc.stderr
    assert not marker.exists() and not (tmp_path / "merged.pkl").exists()


def test_info_reads_the_record_without_unpickling(tmp_path):
    marker = tmp_path / "code-ran"
    path = planted_result(tmp_path / "r.pkl", marker)
    out = run_cli("info", str(path)).stdout
    assert '"stage": "agc::ttbar"' in out and not marker.exists()
    assert load_meta(path)["events"] == {"ttbar": 1} and not marker.exists()


def test_a_result_others_can_write_is_never_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    path = planted_result(tmp_path / "r.pkl", marker)
    os.chmod(path, 0o664)
    with pytest.raises(ResultError, match=r"writable by group or others \(mode 664\)"):
        load_result(path)
    assert not marker.exists()


def test_outputs_are_never_group_or_world_writable(tmp_path):
    old = os.umask(0o002)  # a shared group folder's usual umask
    try:
        save_result(tmp_path / "r.pkl", {"n": 1}, {"events": {}})
        write_text(tmp_path / "t.json", "{}")
    finally:
        os.umask(old)
    for name in ("r.pkl", "t.json"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode & 0o022 == 0, oct(mode)
    assert load_result(tmp_path / "r.pkl")[0] == {"n": 1}


def test_a_planted_link_is_replaced_not_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the victim's own file\n")
    results = tmp_path / "results"
    results.mkdir()
    # The old rule wrote provenance.json.tmp with a shell redirection, then renamed it.
    (results / "provenance.json.tmp").symlink_to(victim)
    (results / "provenance.json").symlink_to(victim)
    save_result(tmp_path / "merged.pkl", {}, {"events": {"d": 1}})
    run_cli("info", str(tmp_path / "merged.pkl"), "--out", str(results / "provenance.json"))
    write_bytes(results / "other.bin", b"x")
    assert victim.read_text() == "the victim's own file\n"
    assert not (results / "provenance.json").is_symlink()
    assert '"d": 1' in (results / "provenance.json").read_text()


@pytest.mark.parametrize(
    "url",
    ["root://../workflow/Snakefile", "root://host/../../workflow/Snakefile", "root://./x",
     "root://host/a/../../../etc/passwd"],
)  # fmt: skip
def test_a_stage_in_copy_never_leaves_its_folder(url):
    with pytest.raises(RemoteError, match="cannot stage in"):
        staged_path(url, "staged")
    assert staged_path("root://eos.cern.ch:1094//store/a.root", "staged") == (
        "staged/eos.cern.ch_1094/store/a.root"
    )
