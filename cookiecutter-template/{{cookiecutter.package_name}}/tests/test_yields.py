"""The own step: yields read from an exported histograms.root."""

import json

import hist
import pytest
from swift_rules.export import write_root

from {{ cookiecutter.package_name }}.yields import main, yields


@pytest.fixture
def histograms_root(tmp_path):
    def mass(values):
        h = hist.Hist.new.Reg(4, 70.0, 110.0, name="mass").Weight()
        h.view().value = values
        return h

    groups = {"signal": mass([1.0, 10.0, 10.0, 1.0]), "background": mass([2.0, 1.0, 1.0, 2.0]),
              "data": mass([3.0, 12.0, 11.0, 2.0])}  # fmt: skip
    description = {
        "luminosity": 1.0,
        "groups": {g: {"datasets": [g], "is_data": g == "data"} for g in groups},
        "histograms": {"mass": sorted(groups)},
    }
    path = tmp_path / "histograms.root"
    write_root(path, {"mass": groups}, description)
    return path


def test_yields_of_every_group_and_data_over_simulation(histograms_root):
    result = yields(histograms_root, "mass")
    assert result["yields"] == {"background": 6.0, "data": 28.0, "signal": 22.0}
    assert result["data_over_simulation"] == pytest.approx(28.0 / 28.0)


def test_yields_in_a_window(histograms_root):
    result = yields(histograms_root, "mass", window=(80.0, 100.0))
    assert result["yields"] == {"background": 2.0, "data": 23.0, "signal": 20.0}


def test_the_command_writes_json(histograms_root, tmp_path):
    out = tmp_path / "out" / "yields.json"
    main([str(histograms_root), "--histogram", "mass", "--window", "80", "100", "--out", str(out)])
    assert json.loads(out.read_text())["window"] == [80.0, 100.0]


def test_an_unknown_histogram_is_named(histograms_root):
    with pytest.raises(SystemExit, match="no histogram 'pt'"):
        yields(histograms_root, "pt")
