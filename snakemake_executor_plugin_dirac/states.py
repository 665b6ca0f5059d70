"""How the executor reads a DIRAC job's state (docs/backends.md): which states end a job
well or badly, and when a job that has not started, or stays Stalled, is given up.
Pure functions of the state and the job's clock, unit-tested in tests/test_dirac.py."""

# ruff: noqa: UP045
from dataclasses import dataclass
from typing import Optional

NOT_STARTED = {"Received", "Checking", "Staging", "Waiting", "Matched", "Rescheduled"}
SUCCESS = {"Done", "Completed"}
FAILURE = {"Failed", "Killed", "Deleted"}


@dataclass
class Clock:
    """When a job was submitted (or last Rescheduled: queued again), and since when it is
    Stalled (None: it is not), in ``time.monotonic()`` seconds."""

    submitted: float
    stalled: Optional[float] = None


def outcome(status: str) -> Optional[str]:
    """``"success"``, ``"failure"`` or None (still active) for a DIRAC job status."""
    if status in SUCCESS:
        return "success"
    if status in FAILURE:
        return "failure"
    return None


def overdue(status: str, clock: Clock, now: float, start_timeout: float,
            stalled_timeout: float) -> Optional[str]:  # fmt: skip
    """Why an active job in ``status`` is given up now (killed and failed), or None.

    A Stalled job (the pilot stopped answering) may come back: it is given up after
    ``stalled_timeout`` seconds of Stalled. A job not started ``start_timeout`` seconds
    after its submission is given up; Rescheduled puts it back in the queue, and its
    start clock restarts then. ``clock`` is updated.
    """
    if status == "Stalled":
        clock.stalled = clock.stalled or now
        limit, since = stalled_timeout, clock.stalled
        what = f"stayed Stalled for {limit} s (--dirac-stalled-timeout)"
    else:
        clock.stalled = None
        if status == "Rescheduled":  # queued again: the start clock restarts
            clock.submitted = now
        if status not in NOT_STARTED:
            return None
        limit, since = start_timeout, clock.submitted
        what = f"did not start within {limit} s (--dirac-start-timeout)"
    return what if now - since >= limit else None
