"""Dask workers against one process, and 1 against 2 cores.

The stage over the benchmark set on clusters whose workers are already up (each
cluster warmed by one run first): a ``dask scheduler`` and single-threaded
``dask worker`` processes (no nanny) on this machine, reached over ``tcp://``, or
through the connection broker (``broker://``, every connection relayed); one worker
also with ``MALLOC_TRIM_THRESHOLD_=65536``, which a Dask nanny (and so a LocalCluster)
sets for its workers. Against the stage in this process on one core. Passes are
interleaved; medians are shown. 2 workers also with chunks of 500,000 events, and with
the scheduler's queuing off (``worker-saturation: inf``, as swift-rules' LocalCluster has
it: consecutive chunks of a file go to one worker). Then what
grows with the number of workers (the scheduler's CPU per task, the client's and the
workers' CPU, the merge of partial results), and the machine's own ceiling: the stage
in 2 processes at once, each on half of the files, without Dask.

    python benchmarks/dask_scaling.py [--repeat 3] [--files-per-sample N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from common import RUN_ENV, benchmark_fileset, machine, table
from distributed.diagnostics.plugin import SchedulerPlugin
from stage_throughput import stage

TOKEN = "benchmark-token-0123456789abcdef"


class TaskCounter(SchedulerPlugin):
    """Counts the tasks that finish on the scheduler."""

    name = "task-counter"

    def __init__(self):
        self.done = 0

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            self.done += 1


def _cpu(pid: int) -> float:
    """CPU seconds (user and system) that process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cluster:
    """A scheduler and ``workers`` worker processes, stopped by ``close``."""

    def __init__(self, work: Path, workers: int, env: dict, via: str | None = None):
        self.procs: list[subprocess.Popen] = []
        sched_file = work / f"scheduler-{id(self)}.json"
        cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--no-dashboard",
               "--scheduler-file", str(sched_file)]  # fmt: skip
        local = ["--host", "127.0.0.1", "--port", "0"]
        cmd += ["--host", via, "--protocol", "broker"] if via else local
        self.scheduler = self._start(cmd, env, work / "scheduler.log")
        while not sched_file.exists():
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"the scheduler failed: see {work / 'scheduler.log'}")
            time.sleep(0.1)
        time.sleep(0.2)
        self.address = json.loads(sched_file.read_text())["address"]
        for i in range(workers):
            cmd = [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
                   "--nthreads", "1", "--no-dashboard", "--no-nanny", "--name", f"w{i}",
                   "--host", via or "127.0.0.1"]  # fmt: skip
            self._start(cmd, env, work / f"worker-{i}.log")
        from distributed import Client

        self.client = Client(self.address, timeout=60)
        self.client.wait_for_workers(workers, timeout=120)
        self.client.register_plugin(TaskCounter())

    def _start(self, cmd, env, log) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def scheduler_cpu(self) -> float:
        """CPU seconds the scheduler process has used."""
        return _cpu(self.scheduler.pid)

    def workers_cpu(self) -> float:
        """CPU seconds the worker processes have used, together."""
        return sum(_cpu(proc.pid) for proc in self.procs[1:])

    def run(self, layout, chunksize: int = 100_000) -> tuple[float, float, int]:
        """(wall time, scheduler CPU seconds, tasks) of one pass of the stage; the
        client's and the workers' CPU seconds of the pass in ``self.last_cpu``."""
        from coffea import processor
        from coffea.nanoevents import NanoAODSchema

        from swift_rules.agc.ttbar import TtbarProcessor
        from swift_rules.kept_files import Runner  # the workflow's (files kept open)

        executor = processor.DaskExecutor(client=self.client, status=False)
        runner = Runner(executor, chunksize=chunksize, schema=NanoAODSchema)
        cpu, tasks = self.scheduler_cpu(), self._tasks()
        client, workers = time.process_time(), self.workers_cpu()
        started = time.perf_counter()
        runner(layout, TtbarProcessor(), treename="Events")
        wall = time.perf_counter() - started
        self.last_cpu = (time.process_time() - client, self.workers_cpu() - workers)
        return wall, self.scheduler_cpu() - cpu, self._tasks() - tasks

    def _tasks(self) -> int:
        """Tasks the scheduler has seen finish (counted by ``TaskCounter``)."""
        return self.client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.plugins["task-counter"].done
        )

    def close(self) -> None:
        self.client.close()
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _stage_wall(fileset) -> float:
    return stage(fileset)[1]


def machine_ceiling(fileset, passes: int) -> tuple[list[float], list[float]]:
    """The machine's own 2-core ceiling, without Dask: wall times of the stage over
    ``fileset`` in one process, and in two processes at once, each on every other file
    (fresh processes, warmed first), ``passes`` times, interleaved."""
    import multiprocessing

    files = [(name, path) for name, paths in fileset.items() for path in paths]
    halves = [{}, {}]
    for i, (name, path) in enumerate(files):
        halves[i % 2].setdefault(name, []).append(path)
    one, two = [], []
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_stage_wall, [{k: v[:1]} for k, v in list(fileset.items())[:2]])  # warm-up
        for _ in range(passes):
            one.append(pool.apply(_stage_wall, (fileset,)))
            started = time.perf_counter()
            pool.map(_stage_wall, halves, chunksize=1)
            two.append(time.perf_counter() - started)
    return one, two


def cost_rows(sched: dict[str, list[tuple]]) -> list[list[str]]:
    """Rows of what a 2-worker pass costs beside its chunks, a column per cluster kind,
    from the passes' (scheduler CPU, tasks, client CPU, workers' CPU, wall time)."""
    med = [[statistics.median(x) for x in zip(*passes, strict=True)] for passes in sched.values()]
    return [
        ["tasks per pass (chunks and coffea's tree of merges)", *(f"{m[1]:.0f}" for m in med)],
        ["scheduler CPU per pass [s]", *(f"{m[0]:.2f}" for m in med)],
        ["scheduler CPU per task [ms]", *(f"{m[0] / max(m[1], 1) * 1e3:.2f}" for m in med)],
        ["client CPU per pass (this process: results received and merged) [s]",
         *(f"{m[2]:.2f}" for m in med)],
        ["workers' CPU per pass, both [s]", *(f"{m[3]:.2f}" for m in med)],
        ["workers busy (their CPU / (2 x wall time))", *(f"{m[3] / (2 * m[4]):.2f}" for m in med)],
    ]  # fmt: skip


def merge_cost(layout, counts=(10, 100, 1000)) -> list[list[str]]:
    """Seconds to merge N partial results of the stage (coffea's accumulate)."""
    from coffea.processor import accumulate

    name, entry = next(iter(layout.items()))
    partial, _ = stage({name: entry["files"][:1]})
    rows = []
    for n in counts:
        parts = [copy.deepcopy(partial) for _ in range(n)]
        started = time.perf_counter()
        accumulate(parts)
        wall = time.perf_counter() - started
        rows.append([f"{n:,}", f"{wall:.3f}", f"{wall / n * 1e3:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="passes (medians are shown)")
    parser.add_argument("--files-per-sample", type=int, default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from coffea.nanoevents import NanoAODSchema

    from swift_rules.broker import protocol

    NanoAODSchema.warn_missing_crossrefs = False
    fileset = benchmark_fileset()
    if args.files_per_sample:
        fileset = {s: f[: args.files_per_sample] for s, f in fileset.items()}
    layout = {name: {"files": files} for name, files in fileset.items()}
    n_events = 0
    import uproot

    for files in fileset.values():
        for path in files:
            with uproot.open(path) as f:
                n_events += f["Events"].num_entries

    work = Path(tempfile.mkdtemp(prefix="dask-scaling-"))
    token = work / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    env = {k: v for k, v in RUN_ENV.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    env[protocol.TOKEN_FILE_ENV] = str(token)
    os.environ[protocol.TOKEN_FILE_ENV] = str(token)  # this client's, for broker://
    with open(work / "broker.log", "ab") as broker_log:
        broker = subprocess.Popen(
            [sys.executable, "-m", "swift_rules.cli", "broker", "serve", "--host", "127.0.0.1",
             "--port", "0", "--token-file", str(token)],
            env=env, stdout=broker_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    import re

    via = None
    while via is None:
        if broker.poll() is not None:
            raise RuntimeError(f"the broker failed: see {work / 'broker.log'}")
        time.sleep(0.2)
        found = re.search(r"broker listening on \S+:(\d+)", (work / "broker.log").read_text())
        via = f"127.0.0.1:{found.group(1)}" if found else None

    kinds = {
        "1 worker, tcp://": (1, env, None),
        "1 worker, tcp://, MALLOC_TRIM_THRESHOLD_=65536": (
            1, {**env, "MALLOC_TRIM_THRESHOLD_": "65536"}, None),
        "1 worker, behind the broker (broker://)": (1, env, via),
        "2 workers, tcp://": (2, env, None),
        "2 workers, tcp://, chunks of 500,000 events": (2, env, None),
        "2 workers, tcp://, queuing off (worker-saturation: inf)": (
            2, {**env, "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "inf"}, None),
    }  # fmt: skip
    clusters = {}
    try:
        for name, (workers, cluster_env, through) in kinds.items():
            folder = work / name.split(",")[0].replace(" ", "-") / str(len(clusters))
            folder.mkdir(parents=True)
            clusters[name] = Cluster(folder, workers, cluster_env, through)
            clusters[name].run({k: {**v, "files": v["files"][:1]} for k, v in layout.items()})
        stage({k: v["files"][:1] for k, v in layout.items()})  # warm-up here too
        walls = {"in this process, 1 core": [], **{k: [] for k in kinds}}
        sched = {k: [] for k in kinds if k.startswith("2 workers") and "500,000" not in k}
        for _ in range(args.repeat):
            walls["in this process, 1 core"].append(stage(fileset)[1])
            for name, cluster in clusters.items():
                wall, cpu, tasks = cluster.run(layout, 500_000 if "500,000" in name else 100_000)
                walls[name].append(wall)
                if name in sched:
                    sched[name].append((cpu, tasks, *cluster.last_cpu, wall))
    finally:
        for cluster in clusters.values():
            cluster.close()
        broker.terminate()
        broker.wait(20)

    med = {k: statistics.median(v) for k, v in walls.items()}
    base = med["in this process, 1 core"]
    one = med["1 worker, tcp://"]
    rows = []
    for name, wall in med.items():
        workers = kinds[name][0] if name in kinds else 1
        rows.append([name, f"{wall:.2f}", f"{n_events / wall:,.0f}",
                     f"{n_events / wall / workers:,.0f}", f"{base / wall / workers:.2f}",
                     f"{one / wall:.2f}"])  # fmt: skip
    table(
        f"agc::ttbar on Dask workers that are up, {n_events:,} events ({machine()}), "
        f"median of {args.repeat}",
        ["what", "wall time [s]", "events/s", "events/s per worker",
         "per worker / in-process", "speed-up over 1 worker"],
        rows,
    )  # fmt: skip
    print("passes [s]: " + "; ".join(f"{k}: {', '.join(f'{t:.2f}' for t in v)}"
                                    for k, v in walls.items()))  # fmt: skip
    table(
        "what grows with the workers: the scheduler (2-worker runs, medians) and the merge",
        ["what", *sched],
        cost_rows(sched),
    )
    one, two = machine_ceiling(fileset, args.repeat)
    t_one, t_two = statistics.median(one), statistics.median(two)
    table(
        "the machine's own ceiling: the stage in 1 process, and in 2 processes at once "
        "(each on every other file; no Dask), median of " + str(args.repeat),
        ["what", "wall time [s]", "events/s", "speed-up over 1 process"],
        [["1 process", f"{t_one:.2f}", f"{n_events / t_one:,.0f}", "1.00"],
         ["2 processes at once", f"{t_two:.2f}", f"{n_events / t_two:,.0f}",
          f"{t_one / t_two:.2f}"]],
    )  # fmt: skip
    print("passes [s]: 1 process: " + ", ".join(f"{t:.2f}" for t in one)
          + "; 2 processes: " + ", ".join(f"{t:.2f}" for t in two))  # fmt: skip
    table(
        "merging N partial results of the stage (coffea's accumulate, one process)",
        ["partial results", "time [s]", "per partial result [ms]"],
        merge_cost(layout),
    )


if __name__ == "__main__":
    main()
