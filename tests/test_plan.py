"""The workflow plan: samples, file groups, job arguments and outputs from a config."""

from __future__ import annotations

import json
import shlex

import pytest

from swift_rules.config import ConfigError, validate_config
from swift_rules.workflow import Plan, read_fileset


def test_generated_preset_layout():
    plan = Plan(
        {
            "data": {"generated": {"preset": "tiny"}, "files_per_group": 1},
            "stages": {"agc::ttbar": {}},
        }
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


def test_real_agc_fileset_with_a_file_limit():
    plan = Plan(
        {
            "data": {"source": "fileset", "fileset": "agc", "max_files_per_sample": 1},
            "stages": {"agc::ttbar": {}},
        }
    )
    assert len(plan.samples) == 9
    (url,) = plan.group_files("wjets__nominal", 0)
    assert url.startswith("https://") and url.endswith(".root")
    assert plan.local_inputs("wjets__nominal", 0) == []  # remote: read, not tracked
    full = read_fileset("agc")
    assert sum(len(f) for f in full.values()) == 787
    assert sum(n for f in full.values() for _, n in f) == 940_160_174


def test_samples_subset_and_unknown_sample():
    cfg = {"data": {"generated": {"preset": "tiny"}, "samples": ["wjets__nominal"]}}
    assert Plan(cfg).samples == ["wjets__nominal"]
    cfg["data"]["samples"] = ["zprime__nominal"]
    with pytest.raises(ValueError, match="zprime__nominal"):
        Plan(cfg)


def test_run_arguments_carry_settings_but_not_resources_or_executor():
    plan = Plan(
        {
            "data": {"generated": {"preset": "tiny"}},
            "stages": {"agc::ttbar": {"threads": 4, "options": {"btag_threshold": 0.7}}},
            "executor": {"type": "address", "address": "tcp://x:1"},
        }
    )
    args = shlex.split(plan.run_args("agc::ttbar", "ttbar__nominal", 0))
    settings = json.loads(args[args.index("--settings") + 1])
    assert settings["options"] == {"btag_threshold": 0.7}
    assert "threads" not in settings and "tcp://x:1" not in " ".join(args)
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
        {
            "data": {"generated": {"preset": "tiny"}},
            "stages": {"agc::ttbar": {}},
            "executor": {"skip_bad_files": True},
        }
    )
    assert "--skip-bad-files" in shlex.split(plan.run_args("agc::ttbar", "wjets__nominal", 0))
    assert "skip_bad_files" not in plan.executor_json()


def test_gpu_asked_for_a_stage_without_gpu_variant_fails_at_planning():
    from swift_rules.device import DeviceError
    from swift_rules.registry import StageRegistry

    cfg = {
        "register": {"ns::cpu_only": {"cpu": "swift_rules.agc.ttbar:TtbarProcessor"}},
        "data": {"generated": {"preset": "tiny"}},
        "stages": {"ns::cpu_only": {"device": "gpu"}},
    }
    plan = Plan(cfg, registry=StageRegistry(builtins=False))
    with pytest.raises(DeviceError, match="ns::cpu_only.*no GPU variant"):
        plan.code_fingerprint("ns::cpu_only")


def test_stage_module_that_cannot_be_found_fails_at_planning():
    from swift_rules.registry import RegistryError, StageRegistry

    cfg = {
        "register": {"ns::s": {"cpu": "nowhere_to_be_found:P"}},
        "stages": {"ns::s": {}},
        "data": {"generated": {"preset": "tiny"}},
    }
    plan = Plan(cfg, registry=StageRegistry(builtins=False))
    with pytest.raises(RegistryError, match="nowhere_to_be_found.*PYTHONPATH"):
        plan.code_fingerprint("ns::s")


def test_fingerprint_depends_on_device_choice(monkeypatch):
    from swift_rules.registry import StageRegistry

    reg = StageRegistry(builtins=False)
    cfg = {
        "register": {
            "ns::s": {
                "cpu": "swift_rules.agc.ttbar:TtbarProcessor",
                "gpu": "swift_rules.agc.normalise:X",
            }
        },
        "stages": {"ns::s": {"device": "cpu"}},
        "data": {"generated": {"preset": "tiny"}},
    }
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
    from conftest import run_cli

    good = tmp_path / "good.yaml"
    good.write_text("stages:\n  agc::ttbar: {}\n")
    assert "valid" in run_cli("validate", str(good)).stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("executor:\n  type: slurm\n")
    proc = run_cli("validate", str(bad), check=False)
    assert proc.returncode == 2 and "executor.type: 'slurm'" in proc.stderr


def test_planning_imports_no_stage_and_no_coffea():
    # The code fingerprint reads sources; `from swift_rules.agc.ttbar import ...` in the
    # GPU variant must not import the CPU variant (and coffea) to look for a submodule.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from swift_rules.workflow import Plan\n"
        "plan = Plan({'data': {'source': 'generated', 'generated': {'preset': 'tiny'}},\n"
        "             'stages': {'agc::ttbar': {}}})\n"
        "plan.code_fingerprint('agc::ttbar')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('coffea', 'numba')\n"
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
