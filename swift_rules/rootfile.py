"""ROOT files whose bytes depend on their content only: written atomically, reproducibly.

uproot stamps every file it writes with a fresh UUID (``uuid.uuid1``: host and time)
and the current time (the file's, each directory's and each key's ``TDatime``), so two
writes of the same histograms differ in some 580 bytes. Here the UUIDs are derived
from the target's file name (``uuid5``: two outputs of a run still differ, the same
output of two runs does not), and the time is ``SOURCE_DATE_EPOCH`` when it is set
(the reproducible-builds convention), else a fixed 2000-01-01 00:00:00 UTC.

uproot has no option for the time: its writer calls ``datetime.datetime.now()``. While a
file is written here, those calls in uproot's writing modules see the fixed time.
``tests/test_reproducibility.py`` checks that two writes give the same bytes, so an
uproot that changes how it stamps files is noticed.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

from swift_rules.atomic import atomic_path

__all__ = ["recreate", "source_date"]

NAMESPACE = uuid.UUID("6f1c3f5e-7f9b-4a9e-9c1e-5a17f5b0c0de")  # swift-rules' own
DEFAULT_DATE = datetime.datetime(2000, 1, 1, 0, 0, 0)
# uproot's modules that stamp what they write with datetime.datetime.now().
_STAMPING = ("uproot.writing._cascade", "uproot.writing._cascadetree",
             "uproot.writing._cascadentuple", "uproot.writing.writable")  # fmt: skip
_lock = threading.Lock()


def source_date() -> datetime.datetime:
    """The time written into files: ``SOURCE_DATE_EPOCH`` (UTC), else 2000-01-01."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        utc = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.UTC)
        return utc.replace(tzinfo=None)
    return DEFAULT_DATE


class _FixedClock:
    """Stands in for the ``datetime`` module in uproot's writers: ``now()`` is fixed."""

    def __init__(self, when: datetime.datetime):
        fixed = when

        class _DateTime(datetime.datetime):
            @classmethod
            def now(cls, tz=None):
                return fixed

        self.datetime = _DateTime

    def __getattr__(self, name):
        return getattr(datetime, name)


@contextlib.contextmanager
def _fixed_time() -> Iterator[None]:
    import importlib

    modules = [importlib.import_module(m) for m in _STAMPING]
    clock = _FixedClock(source_date())
    with _lock:
        saved = [m.datetime for m in modules]
        for m in modules:
            m.datetime = clock
        try:
            yield
        finally:
            for m, old in zip(modules, saved):  # noqa: B905 - same lengths by construction
                m.datetime = old


def _uuids(name: str):
    """UUIDs for the file and each directory in it, derived from the file's name."""
    counter = iter(range(1 << 30))
    return lambda: uuid.uuid5(NAMESPACE, f"{name}#{next(counter)}")


@contextlib.contextmanager
def recreate(target: str | os.PathLike, **options) -> Iterator[object]:
    """``uproot.recreate`` of ``target``, atomically (a temporary file renamed on success)
    and reproducibly (UUIDs from the name, a fixed time)."""
    import uproot

    with atomic_path(target) as tmp, _fixed_time():
        uuid_function = _uuids(Path(target).name)
        with uproot.recreate(tmp, uuid_function=uuid_function, **options) as f:
            yield f
