"""The live display: an ipywidgets HTML widget that a thread updates, or plain text."""

from __future__ import annotations

import sys
import threading
from pathlib import Path


def in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (where widgets and inline images show)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class Live:
    """A widget showing a run's status, refreshed every ``interval`` seconds by a
    daemon thread until the run ends (the kernel stays free for other cells)."""

    def __init__(self, workflow, interval: float = 1.0):
        import ipywidgets

        self.workflow = workflow
        self.interval = interval
        self.widget = ipywidgets.HTML(value=workflow.status()._repr_html_())
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="swift-rules-progress", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                status = self.workflow.status()
                value = status._repr_html_()
            except Exception as err:  # the display must not die silently: say why
                value = f"<pre>swift-rules: progress display stopped: {err}</pre>"
                self.widget.value = value
                return
            if value != self.widget.value:
                self.widget.value = value
            if not status.is_running:
                return

    def close(self) -> None:
        self._stop.set()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def show(workflow, interval: float = 1.0):
    if in_kernel():
        try:
            live = Live(workflow, interval)
        except ImportError:
            live = None
        if live is not None:
            from IPython.display import display

            display(live.widget)
            return live
        from IPython.display import HTML, display

        display(HTML(workflow.status()._repr_html_()))
        return None
    print(workflow.status(), flush=True)
    return None


def show_images(paths: list[Path], root: Path) -> None:
    if not in_kernel():
        for p in paths:
            print(p)
        return
    from IPython.display import Image, Markdown, display

    for p in paths:
        display(Markdown(f"`{p.relative_to(root)}`"), Image(filename=str(p), width=560))
