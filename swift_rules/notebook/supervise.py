"""The process that a notebook run leaves behind: Snakemake's parent, in a session of its own.

    python -m swift_rules.notebook.supervise STATE_FOLDER -- snakemake ARGS...

It belongs to no kernel and no terminal (the notebook starts it with a new session), so a
closed browser, a restarted kernel or a logout leave it running. It starts Snakemake,
waits for it and writes ``exit.json`` (its exit status and when it ended), so that any
later kernel can tell a finished run from a failed one. A stop signals the whole process
group: Snakemake (which cancels its jobs, also on a cluster) gets SIGINT; this process
only waits for it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def write_json(path: Path, record: dict) -> None:
    """As swift_rules.notebook.state.write_json (kept here: this process imports nothing)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(
            "usage: python -m swift_rules.notebook.supervise STATE -- COMMAND...", file=sys.stderr
        )
        return 2
    folder, command = Path(argv[0]), argv[2:]
    # Snakemake must see the group's SIGINT and SIGTERM as usual: a handler here (not
    # SIG_IGN, which a child would inherit) lets this process outlive them and record the end.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup: no terminal to hang up
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    except OSError as err:
        print(f"[swift-rules] cannot start {command[0]}: {err}", flush=True)
        write_json(folder / "exit.json", {"returncode": 127, "ended": time.time()})
        return 127
    while True:
        try:
            returncode = proc.wait()
            break
        except InterruptedError:  # pragma: no cover - Python retries wait() itself
            continue
    record = {"returncode": returncode, "ended": time.time(), "snakemake_pid": proc.pid}
    write_json(folder / "exit.json", record)
    return 0 if returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
