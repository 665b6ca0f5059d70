"""Stage registry and device choice."""

from __future__ import annotations

import pytest

from swift_rules import device
from swift_rules.registry import RegistryError, StageRegistry, register_stage


@pytest.fixture
def registry():
    return StageRegistry(builtins=False)


def test_yaml_registration_in_the_documented_form(tmp_path, registry):
    path = tmp_path / "stages.yaml"
    path.write_text(
        "register:\n"
        "  my_namespace::my_stage:\n"
        "    cpu: my_module.my_stage\n"
        "    gpu: my_module.my_stage_gpu\n"
    )
    registry.register_yaml(path)
    stage = registry.get("my_namespace::my_stage")
    assert stage.variants["cpu"].target == "my_module.my_stage"
    assert stage.variants["gpu"].module == "my_module"
    assert str(path) in stage.variants["gpu"].source


def test_builtin_agc_stage_is_registered():
    reg = StageRegistry()
    assert "agc::ttbar" in reg.names()
    cls = reg.get("agc::ttbar").variants["cpu"].load()
    assert cls.__name__ == "TtbarProcessor"


def test_python_decorator_registration(registry):
    @register_stage("mine::thing", registry=registry)
    class Thing:
        pass

    @register_stage("mine::thing", device="gpu", registry=registry)
    class ThingGPU:
        pass

    stage = registry.get("mine::thing")
    assert stage.variants["cpu"].target.endswith(
        ":test_python_decorator_registration.<locals>.Thing"
    )
    assert set(stage.variants) == {"cpu", "gpu"}


def test_two_registrations_of_one_name_say_where_each_came_from(tmp_path, registry):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("register:\n  ns::s:\n    cpu: pkg.one:Proc\n")
    b.write_text("register:\n  ns::s:\n    cpu: pkg.two:Proc\n")
    registry.register_yaml(a)
    with pytest.raises(RegistryError) as err:
        registry.register_yaml(b)
    assert "pkg.one:Proc" in str(err.value) and str(a) in str(err.value)
    assert "pkg.two:Proc" in str(err.value) and str(b) in str(err.value)


def test_identical_reregistration_is_harmless(registry):
    registry.register("ns::s", cpu="pkg.mod:P", source="one")
    registry.register("ns::s", cpu="pkg.mod:P", source="two")
    assert registry.get("ns::s").variants["cpu"].source == "one"


@pytest.mark.parametrize("name", ["nonamespace", "ns::", "::s", "ns::s::t", "1ns::s"])
def test_bad_stage_names(registry, name):
    with pytest.raises(RegistryError, match="namespace::stage"):
        registry.register(name, cpu="a.b:C", source="test")


def test_unknown_stage_lists_known(registry):
    registry.register("ns::known", cpu="a.b:C", source="test")
    with pytest.raises(RegistryError, match=r"unknown stage 'ns::other'.*ns::known"):
        registry.get("ns::other")


def test_unknown_variant_key_is_an_error(registry):
    with pytest.raises(RegistryError, match="unknown key"):
        registry.register_mapping({"ns::s": {"cpu": "a:B", "tpu": "a:C"}}, source="cfg")


def test_bad_import_paths_name_the_path_and_source(registry):
    registry.register("ns::a", cpu="no_such_module_xyz:Proc", source="my.yaml")
    registry.register("ns::b", cpu="swift_rules.registry:NoSuchClass", source="my.yaml")
    with pytest.raises(RegistryError, match=r"no_such_module_xyz.*my\.yaml"):
        registry.get("ns::a").variants["cpu"].load()
    with pytest.raises(RegistryError, match=r"NoSuchClass.*my\.yaml"):
        registry.get("ns::b").variants["cpu"].load()


# -- device choice ---------------------------------------------------------------


@pytest.fixture
def both(registry):
    return registry.register("ns::s", cpu="m:CPU", gpu="m:GPU", source="t")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.delenv(device.ENV_VAR, raising=False)
    monkeypatch.setattr(device, "gpu_status", lambda: (False, "no CUDA driver"))


@pytest.fixture
def with_gpu(monkeypatch):
    monkeypatch.delenv(device.ENV_VAR, raising=False)
    monkeypatch.setattr(device, "gpu_status", lambda: (True, "CUDA device 0 is usable"))


def test_auto_takes_gpu_when_usable(both, with_gpu):
    assert device.choose(both, "auto").device == "gpu"


def test_auto_falls_back_to_cpu_with_reason(both, no_gpu):
    choice = device.choose(both, "auto")
    assert choice.device == "cpu" and "no CUDA driver" in choice.reason


def test_auto_without_gpu_variant_is_cpu(registry, with_gpu):
    stage = registry.register("ns::c", cpu="m:CPU", source="t")
    assert device.choose(stage, "auto").device == "cpu"


def test_gpu_asked_without_a_gpu_is_a_clear_error(both, no_gpu):
    with pytest.raises(device.DeviceError, match="gpu asked by config.*no CUDA driver"):
        device.choose(both, "gpu")


def test_gpu_asked_for_a_stage_without_gpu_variant(registry, with_gpu):
    stage = registry.register("ns::c", cpu="m:CPU", source="t")
    with pytest.raises(device.DeviceError, match="no GPU variant"):
        device.choose(stage, "gpu")


def test_environment_overrides_config(both, with_gpu, monkeypatch):
    monkeypatch.setenv(device.ENV_VAR, "cpu")
    choice = device.choose(both, "gpu")
    assert choice.device == "cpu" and device.ENV_VAR in choice.reason


def test_bad_device_value_names_its_origin(both, monkeypatch):
    monkeypatch.setenv(device.ENV_VAR, "tpu")
    with pytest.raises(device.DeviceError, match=f"'tpu'.*{device.ENV_VAR}"):
        device.choose(both, "auto")


def test_fingerprinted_devices(both, monkeypatch):
    monkeypatch.delenv(device.ENV_VAR, raising=False)
    assert device.possible_devices(both, "auto") == ["cpu", "gpu"]
    assert device.possible_devices(both, "cpu") == ["cpu"]


def test_gpu_probe_on_this_machine_never_imports_cupy_without_a_driver():
    device.gpu_status.cache_clear()
    usable, why = device.gpu_status()
    if usable:
        pytest.skip(f"this machine has a usable GPU ({why})")
    import sys

    if "libcuda" in why:
        assert "cupy" not in sys.modules


def test_stages_command_lists_variants_and_device(tmp_path):
    from helpers import run_cli

    out = run_cli("stages").stdout
    assert "agc::ttbar" in out and "cpu: swift_rules.agc.ttbar:TtbarProcessor" in out
    assert "would run: cpu" in out
