"""The Dask cluster backends without a batch system: the registry of executor types, the
settings' defaults (the config schema's, nowhere else), and the one body that every
batch backend runs (the clear errors, the quiet scheduler, the wait for the first
worker, the close on failure), driven with a Dask cluster of this machine."""

from __future__ import annotations

import ast
import itertools
import time

import pytest
from helpers import REPO

from swift_rules.backends import BACKENDS, ClusterError, dask_client, get_backend
from swift_rules.backends.base import (
    HTTP_HEALTH_ONLY,
    BatchBackend,
    adaptive_limits,
    schema_settings,
)  # fmt: skip
from swift_rules.config import schema

BATCH = ["htcondor", "slurm", "kubernetes", "dirac"]
JOBQUEUE = ["htcondor", "slurm", "dirac"]  # the scheduler runs in the stage job


def executor_schema() -> dict:
    return schema()["properties"]["executor"]["properties"]


def test_every_executor_type_of_the_schema_has_a_backend():
    types = executor_schema()["type"]["enum"]
    assert sorted([*BACKENDS, "iterative"]) == sorted(types)
    for kind in BACKENDS:
        assert get_backend(kind).__module__.startswith("swift_rules.backends."), kind
    with pytest.raises(ClusterError, match=r"unknown executor type 'nope'; known: \['address'"):
        get_backend("nope")


def test_in_process_executors_make_no_cluster():
    with dask_client({"type": "iterative"}, 4) as client:
        assert client is None
    with dask_client({"type": "local"}, 1) as client:
        assert client is None


def test_local_workers_keep_glibcs_trim_threshold_and_get_consecutive_chunks(monkeypatch):
    """A Dask nanny sets MALLOC_TRIM_THRESHOLD_=65536 for its worker (and in the process
    that starts it), which made a worker 0.58 as fast as one process: ours do not."""
    import os

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with dask_client({"type": "local"}, 2) as client:
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert len(seen) == 2 and set(seen.values()) == {None}, seen
        assert set(client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values()) == {"1"}
        # No queue of root tasks: each worker gets a run of consecutive chunks, not every
        # other one (benchmarks/dask_scaling.py).
        saturation = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.WORKER_SATURATION
        )
        assert saturation == float("inf")
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ


def test_local_workers_take_runs_of_consecutive_chunks(tiny_dataset):
    """Two workers do not take turns through a file's chunks (each would open the file
    and decompress every boundary basket again): each runs a stretch of consecutive ones."""
    import uproot
    from coffea import processor
    from coffea.nanoevents import BaseSchema

    from swift_rules.kept_files import Runner

    class WhoRan(processor.ProcessorABC):  # (local: pickled by value for the workers)
        def process(self, events):
            from distributed import get_worker

            return {int(events.metadata["entrystart"]): {get_worker().name}}

        def postprocess(self, accumulator):
            return accumulator

    path = tiny_dataset["ttbar__nominal"][0]
    with uproot.open(path) as f:
        entries = f["Events"].num_entries
    with dask_client({"type": "local"}, 2) as client:
        executor = processor.DaskExecutor(client=client, status=False, retries=0)
        runner = Runner(executor, chunksize=-(-entries // 24), schema=BaseSchema)
        ran = runner({"s": [path]}, WhoRan(), treename="Events")
    workers = [next(iter(ran[start])) for start in sorted(ran)]
    assert len(workers) == 24 and len(set(workers)) == 2, workers
    switches = sum(a != b for a, b in itertools.pairwise(workers))
    assert switches <= 4, workers  # taking turns: ~23


@pytest.mark.parametrize("kind", BATCH)
def test_a_backends_defaults_are_the_schemas(kind):
    """executor.<kind> is read through the schema: its defaults, and its errors."""
    section = executor_schema()[kind]["properties"]
    assert schema_settings({}, kind) == {key: prop["default"] for key, prop in section.items()}
    with pytest.raises(ClusterError, match=rf"executor.{kind}: Additional properties.*'nope'"):
        schema_settings({kind: {"nope": 1}}, kind)
    with pytest.raises(ClusterError, match=rf"executor.{kind}.gpus: 'one' is not of type"):
        schema_settings({kind: {"gpus": "one"}}, kind)
    assert schema_settings({kind: {"gpus": 2}}, kind)["gpus"] == 2


@pytest.mark.parametrize("kind", BATCH)
def test_no_backend_writes_defaults_of_its_own(kind):
    """No second table of defaults beside the schema (a DEFAULTS dict, as there were)."""
    tree = ast.parse((REPO / "swift_rules" / "backends" / f"{kind}.py").read_text())
    names = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}  # fmt: skip
    assert not {n for n in names if "DEFAULT" in n}, names


@pytest.mark.parametrize("kind", JOBQUEUE)
def test_the_schedulers_http_pages_are_quiet_unless_a_dashboard_is_asked_for(kind):
    """dask-jobqueue's scheduler serves its pages (worker logs, task names; no
    authentication) on every interface: loopback only, unless a dashboard is asked for."""
    module = get_backend(kind).__module__
    cluster_kwargs = __import__(module, fromlist=["cluster_kwargs"]).cluster_kwargs
    assert cluster_kwargs({})["scheduler_options"]["dashboard_address"] == "127.0.0.1:0"
    asked = {kind: {"scheduler_options": {"dashboard_address": ":8787"}}}
    assert cluster_kwargs(asked)["scheduler_options"]["dashboard_address"] == ":8787"


def test_bad_adaptive_limits_are_a_clear_error():
    with pytest.raises(ClusterError, match="minimum_workers"):
        adaptive_limits({"minimum_workers": 3, "maximum_workers": 2}, 1)
    assert adaptive_limits({}, 4) == (1, 4, 300.0)
    assert adaptive_limits({"worker_timeout": 5, "maximum_workers": 8}, 1) == (1, 8, 5.0)


# --- the one body of the batch backends, on a cluster of this machine ---------------------


class NeverGivesWorkers(BatchBackend):
    """A batch system that takes the workers' jobs and never runs them: a LocalCluster
    that asks for no worker."""

    kind, title = "slurm", "Nowhere"
    giver = "the test's batch system"
    started: list = []

    def import_cluster_class(self):
        import dask
        from distributed import LocalCluster

        def cluster_class(**kwargs):
            cluster = LocalCluster(**kwargs)
            routes = dask.config.get("distributed.scheduler.http.routes")
            self.started.append((cluster, routes))
            return cluster

        return cluster_class

    def cluster_kwargs(self) -> dict:
        return {"n_workers": 0, "processes": False, "dashboard_address": "127.0.0.1:0"}

    def scale(self, cluster) -> None:
        pass  # (no worker job is ever submitted)

    def diagnosis(self, cluster) -> str:
        return "job 1: idle"


def test_no_worker_in_time_fails_naming_why_and_closes_the_cluster():
    started = time.monotonic()
    with pytest.raises(ClusterError) as err:
        NeverGivesWorkers({"worker_timeout": 1}, 2).client()
    assert time.monotonic() - started < 30
    assert str(err.value) == (
        "the test's batch system gave no Dask worker within 1 s (executor.worker_timeout): "
        "job 1: idle"
    )
    cluster, routes = NeverGivesWorkers.started[-1]
    assert cluster.status.name == "closed"
    # The scheduler started with its HTTP pages at /health only.
    assert routes == HTTP_HEALTH_ONLY["distributed.scheduler.http.routes"]


@pytest.mark.parametrize("kind, command", [("htcondor", "condor_submit"), ("slurm", "sbatch")])
def test_without_the_submit_command_the_error_says_where_to_run(kind, command, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with (
        pytest.raises(ClusterError, match=f"{command}, which is not on PATH here: run the stage"),
        dask_client({"type": kind}, 2),
    ):
        pass


def test_a_missing_package_is_a_clear_error_naming_the_extra():
    class Missing(BatchBackend):
        kind, cluster_class = "htcondor", "no_such_module_here:Cluster"

    with pytest.raises(ClusterError, match=r"needs dask-jobqueue: pip install 'swift-rules\["):
        Missing({}, 2).client()
