"""The workflow plan: datasets, file groups, job arguments and outputs from a config."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest
from helpers import agc_config

from swift_rules.config import ConfigError, validate_config
from swift_rules.datasets import FilesetError, read_fileset
from swift_rules.workflow import Plan


def test_generated_preset_layout():
    plan = Plan(
        agc_config(
            data={"generated": {"preset": "tiny"}, "files_per_group": 1},
            stages={"agc::ttbar": {}},
        )
    )
    assert len(plan.samples) == 9
    assert plan.groups("ttbar__nominal") == [
        ["data/generated/ttbar__nominal/ttbar__nominal_0000.root"],
        ["data/generated/ttbar__nominal/ttbar__nominal_0001.root"],
    ]
    assert plan.partials("agc::ttbar", "ttbar__nominal") == [
        "results/agc/ttbar/partial/ttbar__nominal/group0000.pkl",
        "results/agc/ttbar/partial/ttbar__nominal/group0001.pkl",
    ]
    assert plan.merged("agc::ttbar") == "results/agc/ttbar/merged.pkl"
    # The generator's metadata reaches the stage, with the dataset's events here.
    assert plan.metadata("ttbar__nominal") == {
        "is_data": False, "process": "ttbar", "variation": "nominal", "xsec": 396.87 + 332.97,
        "nevents": 10_000,
    }  # fmt: skip
    assert plan.generated_fileset() == "data/generated/fileset.json"
    assert "data/generated/fileset.json" in plan.targets()


def test_generated_data_needs_a_registered_generator():
    with pytest.raises(ConfigError, match="generator is not set.*agc::nanoaod"):
        Plan({"registries": ["swift_rules.agc"], "stages": {"agc::ttbar": {}}})
    with pytest.raises(ConfigError, match="'huge' is not a preset.*tiny, small, benchmark"):
        Plan(agc_config(data={"generated": {"preset": "huge"}}))


def test_real_agc_fileset_with_a_file_limit():
    plan = Plan(
        agc_config(
            data={"source": "fileset", "fileset": "agc", "max_files_per_sample": 1},
            stages={"agc::ttbar": {}},
        )
    )
    assert len(plan.samples) == 9
    (url,) = plan.group_files("wjets__nominal", 0)
    assert url.startswith("https://") and url.endswith(".root")
    assert plan.local_inputs("wjets__nominal", 0) == []  # remote: read, not tracked
    assert plan.datasets["wjets__nominal"].metadata["xsec"] == 61457 * 0.252


def test_shipped_agc_fileset_is_the_published_one():
    # data/fileset.json (coffea format) has exactly the files and counts of the AGC's
    # nanoaod_inputs.json, with the cross sections of the AGC's table.
    from swift_rules.agc.fileset import FILESET, PUBLISHED, agc_datasets

    shipped = read_fileset(FILESET)
    published = read_fileset(PUBLISHED)
    assert sum(len(d.files) for d in shipped.values()) == 787
    assert sum(d.entries for d in shipped.values()) == 940_160_174
    for name, ds in published.items():
        assert shipped[name].files == ds.files, name
    assert {n: d.metadata for n, d in shipped.items()} == {
        n: d.metadata for n, d in agc_datasets().items()
    }


def test_samples_subset_and_unknown_sample():
    cfg = agc_config(data={"generated": {"preset": "tiny"}, "samples": ["wjets__nominal"]})
    plan = Plan(cfg)
    assert plan.samples == ["wjets__nominal"]
    # Only its files are generated, each with the arguments of its own job.
    assert list(plan.generated) == ["data/generated/wjets__nominal/wjets__nominal_0000.root"]
    assert "--dataset wjets__nominal" in plan.generation_args(next(iter(plan.generated)))
    cfg["data"]["samples"] = ["zprime__nominal"]
    with pytest.raises(ValueError, match="zprime__nominal"):
        Plan(cfg)


def write_coffea_fileset(tmp_path, doc, name="fileset.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_coffea_fileset_with_any_dataset_names_and_metadata(tmp_path):
    path = write_coffea_fileset(
        tmp_path,
        {
            "/DYJetsToLL_M-50/Run2012-v1/NANOAODSIM": {
                "files": {"a.root": "Events", "b.root": {"object_path": "Events",
                                                         "num_entries": 7}},
                "metadata": {"xsec": 3503.7, "process": "DY", "my_key": [1, 2]},
            },
            "Run2012B_TauPlusX": {"files": ["c.root"], "metadata": {"is_data": True}},
        },
    )  # fmt: skip
    plan = Plan({"data": {"source": "fileset", "fileset": str(path)},
                 "stages": {}})  # fmt: skip
    key = next(k for k in plan.samples if k.startswith("DYJets"))
    assert "/" not in key and key.startswith("DYJetsToLL_M-50_Run2012-v1_NANOAODSIM-")
    assert plan.datasets[key].name == "/DYJetsToLL_M-50/Run2012-v1/NANOAODSIM"
    assert plan.metadata(key) == {"xsec": 3503.7, "process": "DY", "my_key": [1, 2]}
    assert plan.metadata("Run2012B_TauPlusX") == {"is_data": True}


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"is_data": "yes"}, "is_data must be true or false, got 'yes'"),
        ({"xsec": -1}, "xsec must be a positive number"),
        ({"xsec": "high"}, "xsec must be a positive number"),
        ({"process": ""}, "process must be a non-empty string"),
        ({"is_data": True, "xsec": 1.0}, "a data set .* has no cross section"),
    ],
)
def test_bad_metadata_is_an_error_naming_the_dataset(tmp_path, metadata, message):
    path = write_coffea_fileset(tmp_path, {"ggH": {"files": ["a.root"], "metadata": metadata}})
    with pytest.raises(FilesetError, match=rf"fileset\.json: dataset 'ggH': {message}"):
        read_fileset(path)


def test_a_file_path_cannot_be_an_option(tmp_path):
    # `--executor=...` as a "file" would be read by argparse as an option of the job.
    evil = '--executor={"type":"address","address":"tcp://10.0.0.1:8786"}'
    path = write_coffea_fileset(tmp_path, {"ttbar": {"files": [evil]}})
    with pytest.raises(FilesetError, match=r"dataset 'ttbar'.*begins with '-'"):
        read_fileset(path)
    agc = tmp_path / "agc.json"
    agc.write_text(json.dumps({"ttbar": {"nominal": {"files": [{"path": evil, "nevts": 1}]}}}))
    with pytest.raises(FilesetError, match=r"ttbar/nominal.*begins with '-'"):
        read_fileset(agc)


def test_files_come_after_the_options_in_job_arguments(tmp_path):
    # Defence in depth: even a file named like an option stays a file.
    path = write_coffea_fileset(tmp_path, {"d": {"files": ["./--x.root", "y.root"]}})
    plan = Plan(
        {
            "registries": ["swift_rules.agc"],
            "data": {"source": "fileset", "fileset": str(path)},
            "stages": {"agc::ttbar": {}},
        }
    )
    args = shlex.split(plan.run_args("agc::ttbar", "d", 0))
    assert args[args.index("--") + 1 :] == ["./--x.root", "y.root"]


def test_run_arguments_carry_settings_but_not_resources_or_executor():
    plan = Plan(
        agc_config(
            data={"generated": {"preset": "tiny"}},
            stages={"agc::ttbar": {"threads": 4, "options": {"btag_threshold": 0.7}}},
            executor={"type": "address", "address": "tcp://x:1"},
        )
    )
    args = shlex.split(plan.run_args("agc::ttbar", "ttbar__nominal", 0))
    settings = json.loads(args[args.index("--settings") + 1])
    assert settings["options"] == {"btag_threshold": 0.7}
    assert "threads" not in settings and "tcp://x:1" not in " ".join(args)
    assert json.loads(args[args.index("--metadata") + 1])["process"] == "ttbar"
    assert json.loads(plan.executor_json())["address"] == "tcp://x:1"
    assert "--skip-bad-files" not in args
    registered = json.loads(args[args.index("--register") + 1])
    assert registered == {
        "agc::ttbar": {
            "cpu": "swift_rules.agc.ttbar:TtbarProcessor",
            "gpu": "swift_rules.agc.ttbar_gpu:TtbarProcessorGPU",
        }
    }


def test_skip_bad_files_is_part_of_the_job_arguments():
    plan = Plan(
        agc_config(
            data={"generated": {"preset": "tiny"}},
            stages={"agc::ttbar": {}},
            executor={"skip_bad_files": True},
        )
    )
    assert "--skip-bad-files" in shlex.split(plan.run_args("agc::ttbar", "wjets__nominal", 0))
    assert "skip_bad_files" not in plan.executor_json()


CHAIN = {
    "register": {
        "ns::skim": {"cpu": "swift_rules.agc.ttbar:TtbarProcessor"},
        "ns::hists": {"cpu": "swift_rules.agc.ttbar:TtbarProcessor"},
    },
    "stages": {
        "ns::skim": {"skim": True},
        "ns::hists": {"input": "ns::skim", "files_per_group": 3},
    },
}


def test_a_chained_stage_reads_the_skims_of_its_input():
    plan = Plan(agc_config(data={"generated": {"preset": "small"}}, **CHAIN))
    skims = [f"results/ns/skim/skims/ttbar__nominal/group{g:04d}.parquet" for g in (0, 1)]
    assert plan.skims("ns::skim", "ttbar__nominal") == skims
    assert plan.partials("ns::skim", "ttbar__nominal")[0].endswith(
        "skim/skims/ttbar__nominal/group0000.pkl"
    )
    # The skims are the chained stage's files, grouped by its own files_per_group.
    assert plan.groups("ttbar__nominal", "ns::hists") == [skims]
    assert plan.local_inputs("ttbar__nominal", 0, "ns::hists") == skims
    args = shlex.split(plan.run_args("ns::hists", "ttbar__nominal", 0))
    assert args[args.index("--") + 1 :] == skims
    settings = json.loads(args[args.index("--settings") + 1])
    assert "input" not in settings and "files_per_group" not in settings


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ({"ns::hists": {"input": "ns::skim"}}, "stage 'ns::skim' is not under 'stages:'"),
        ({"ns::skim": {}, "ns::hists": {"input": "ns::skim"}}, "writes no skims"),
        (
            {"ns::skim": {"skim": True, "input": "ns::hists"},
             "ns::hists": {"skim": True, "input": "ns::skim"}},
            "is a cycle",
        ),
    ],
)  # fmt: skip
def test_bad_chains_are_config_errors(stages, message):
    with pytest.raises(ConfigError, match=message):
        Plan(agc_config(register=CHAIN["register"], stages=stages))


def test_luminosity_needs_a_cross_section_for_every_simulated_dataset(tmp_path):
    path = write_coffea_fileset(
        tmp_path,
        {"mc": {"files": ["a.root"]}, "data": {"files": ["b.root"], "metadata": {"is_data": True}}},
    )
    plan = Plan(
        {
            "registries": ["swift_rules.agc"],
            "data": {"source": "fileset", "fileset": str(path)},
            "stages": {"agc::ttbar": {}},
            "outputs": {"luminosity": 1000.0},
        }
    )
    with pytest.raises(ConfigError, match=r"simulated dataset\(s\) mc have no xsec"):
        plan.export_args("agc::ttbar")


def test_gpu_asked_for_a_stage_without_gpu_variant_fails_at_planning():
    from swift_rules.device import DeviceError
    from swift_rules.registry import StageRegistry

    cfg = agc_config(
        register={"ns::cpu_only": {"cpu": "swift_rules.agc.ttbar:TtbarProcessor"}},
        data={"generated": {"preset": "tiny"}},
        stages={"ns::cpu_only": {"device": "gpu"}},
    )
    with pytest.raises(DeviceError, match="ns::cpu_only.*no GPU variant"):
        Plan(cfg, registry=StageRegistry(builtins=False))


def test_stage_module_that_cannot_be_found_fails_at_planning():
    from swift_rules.registry import RegistryError, StageRegistry

    cfg = agc_config(
        register={"ns::s": {"cpu": "nowhere_to_be_found:P"}},
        stages={"ns::s": {}},
        data={"generated": {"preset": "tiny"}},
    )
    plan = Plan(cfg, registry=StageRegistry(builtins=False))
    with pytest.raises(RegistryError, match="nowhere_to_be_found.*PYTHONPATH"):
        plan.code_fingerprint("ns::s")


def test_fingerprint_depends_on_device_choice(monkeypatch):
    from swift_rules.registry import StageRegistry

    reg = StageRegistry(builtins=False)
    cfg = agc_config(
        register={
            "ns::s": {
                "cpu": "swift_rules.agc.ttbar:TtbarProcessor",
                "gpu": "swift_rules.agc.normalise:X",
            }
        },
        stages={"ns::s": {"device": "cpu"}},
        data={"generated": {"preset": "tiny"}},
    )
    cpu = Plan(cfg, registry=reg).code_fingerprint("ns::s")
    cfg["stages"]["ns::s"]["device"] = "auto"
    auto = Plan(cfg, registry=StageRegistry(builtins=False)).code_fingerprint("ns::s")
    assert cpu != auto


def test_bad_fileset_is_named(tmp_path):
    path = tmp_path / "fs.json"
    path.write_text(json.dumps({"ttbar": {"nominal": {"files": [{"path": "a.root"}]}}}))
    with pytest.raises(ValueError, match=r"fs\.json.*ttbar/nominal"):
        read_fileset(path)
    with pytest.raises(ValueError, match="no_such.json"):
        read_fileset(tmp_path / "no_such.json")
    path.write_text(json.dumps({"ttbar": {"metadata": {}}}))
    with pytest.raises(ValueError, match=r"dataset 'ttbar' is not of the form"):
        read_fileset(path)


def test_config_errors_name_key_and_value():
    with pytest.raises(ConfigError) as err:
        validate_config(
            {
                "stages": {"agc::ttbar": {"device": "tpu", "chunksize": 0}},
                "data": {"sourc": "generated"},
            }
        )
    text = str(err.value)
    assert "stages.agc::ttbar.device: 'tpu' is not one of" in text
    assert "stages.agc::ttbar.chunksize: 0 is less than the minimum of 1" in text
    assert "'sourc' was unexpected" in text


def test_validate_command(tmp_path):
    from helpers import run_cli

    good = tmp_path / "good.yaml"
    good.write_text("stages:\n  agc::ttbar: {}\n")
    assert "valid" in run_cli("validate", str(good)).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("executor:\n  type: kafka\n")
    proc = run_cli("validate", str(bad), check=False)
    assert proc.returncode == 2 and "executor.type: 'kafka'" in proc.stderr
    options = tmp_path / "options.yaml"
    options.write_text("stages:\n  agc::ttbar: {options: {btag_threshold: high}}\n")
    proc = run_cli("validate", str(options), check=False)
    assert proc.returncode == 2 and "btag_threshold: 'high' is not a number" in proc.stderr


def test_planning_imports_no_stage_and_no_coffea():
    # The code fingerprint reads sources; `from swift_rules.agc.ttbar import ...` in the
    # GPU variant must not import the CPU variant (and coffea) to look for a submodule.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from swift_rules.workflow import Plan\n"
        "plan = Plan({'registries': ['swift_rules.agc'], 'data': {'source': 'generated',\n"
        "             'generated': {'generator': 'agc::nanoaod', 'preset': 'tiny'}},\n"
        "             'stages': {'agc::ttbar': {}}})\n"
        "plan.code_fingerprint('agc::ttbar')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "                ('coffea', 'numba', 'numpy', 'uproot', 'awkward')\n"
        "                or m.startswith('swift_rules.agc.ttbar'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_packages_installed_elsewhere_are_not_fingerprinted(tmp_path, monkeypatch):
    # An LCG view (or another environment) on PYTHONPATH: its packages are installed
    # code, not the analysis' own, even though they are outside this interpreter.
    from swift_rules.fingerprint import module_closure

    view = tmp_path / "lcg" / "lib" / "python3.11" / "site-packages"
    (view / "bigdep").mkdir(parents=True)
    (view / "bigdep" / "__init__.py").write_text("import json\n")
    (tmp_path / "mystage.py").write_text("import bigdep\nimport myhelpers\n")
    (tmp_path / "myhelpers.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(view))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert sorted(module_closure(["mystage"], ["mystage"])) == ["myhelpers", "mystage"]


def test_a_module_edited_after_its_imports_were_remembered_is_parsed_again(tmp_path, monkeypatch):
    # A warm-start server parses a package's modules once; a job's fingerprint must
    # still follow an import added since, and hash every file as it is now.
    import os

    from swift_rules.fingerprint import code_fingerprint, module_closure, remember_imports

    (tmp_path / "ana").mkdir()
    (tmp_path / "ana" / "__init__.py").write_text("")
    stage = tmp_path / "ana" / "stage.py"
    stage.write_text("X = 1\n")
    (tmp_path / "ana" / "helpers.py").write_text("Y = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    remember_imports("ana")
    before = code_fingerprint(["ana.stage"])
    assert sorted(module_closure(["ana.stage"], ["ana"])) == ["ana.stage"]
    stage.write_text("from ana import helpers\n")
    os.utime(stage, ns=(1, 1))  # not the time it was parsed at, whatever the clock
    assert sorted(module_closure(["ana.stage"], ["ana"])) == ["ana", "ana.helpers", "ana.stage"]
    assert code_fingerprint(["ana.stage"]) != before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"btag_threshold": "high"},
         r"stages\.agc::ttbar\.options\.btag_threshold: 'high' is not a number"),
        ({"btag_treshold": 0.5}, r"stage agc::ttbar has no option 'btag_treshold'"),
        ({"btag_branch": 3}, r"btag_branch: 3 is not a string"),
    ],
)  # fmt: skip
def test_stage_options_are_checked_when_the_workflow_is_planned(options, message):
    # Read from the stage's __init__ in its source: no job runs, nothing is imported.
    cfg = agc_config(stages={"agc::ttbar": {"options": options}})
    with pytest.raises(ConfigError, match=message) as err:
        Plan(cfg)
    assert 'takes btag_branch="btagCSVV2", btag_threshold=0.5' in str(err.value)


USER_STAGE = """
from coffea import processor


class Base(processor.ProcessorABC):
    def __init__(self, bins: int = 10, edges: list | None = None, label="x", **extra):
        self.bins = bins


class Derived(Base):
    pass


class Schema(processor.ProcessorABC):
    options_schema = {"type": "object", "additionalProperties": False,
                      "properties": {"mode": {"enum": ["fast", "exact"]}}}

    def __init__(self, **options):
        self.options = options


class NoOptions(processor.ProcessorABC):
    def process(self, events):
        return {}
"""


def test_user_stages_declare_their_options_by_signature_or_schema(tmp_path, monkeypatch):
    (tmp_path / "user_stage_mod.py").write_text(USER_STAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from swift_rules.options import OptionsError, check_options

    check_options("u::d", "user_stage_mod:Derived", {"bins": 20, "edges": None, "more": 1})
    with pytest.raises(OptionsError, match=r"options\.bins: 2\.5 is not an integer"):
        check_options("u::d", "user_stage_mod:Derived", {"bins": 2.5})
    with pytest.raises(OptionsError, match=r"options\.label: 1 is not a string"):
        check_options("u::d", "user_stage_mod:Derived", {"label": 1})
    with pytest.raises(OptionsError, match=r"options\.edges: 'a' is not a list"):
        check_options("u::d", "user_stage_mod:Derived", {"edges": "a"})
    check_options("u::s", "user_stage_mod:Schema", {"mode": "fast"})
    with pytest.raises(OptionsError, match=r"stages\.u::s\.options\.mode: 'slow' is not one of"):
        check_options("u::s", "user_stage_mod:Schema", {"mode": "slow"})
    with pytest.raises(OptionsError, match=r"has no option 'x'.*takes no options"):
        check_options("u::n", "user_stage_mod:NoOptions", {"x": 1})
    # A stage whose source cannot be read is not checked (the job says what is wrong).
    check_options("u::z", "not_a_module_anywhere:Z", {"x": 1})


def test_reading_the_config_does_not_import_rfc3987_syntax():
    """jsonschema would import rfc3987-syntax (1.5 s: it builds 38 grammars) in every
    Snakemake process that reads a workflow; the config module imports it without, and
    the package stays importable afterwards."""
    code = (
        "import importlib.util, sys; import swift_rules.config, jsonschema\n"
        "assert 'rfc3987_syntax' not in sys.modules, 'imported'\n"
        "if importlib.util.find_spec('rfc3987_syntax'): import rfc3987_syntax\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
