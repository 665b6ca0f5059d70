"""swift-rules from a notebook: start a workflow, watch it, attach to it, stop it, and
read its results as Python objects (docs/notebook.md).

    import swift_rules.notebook as sn

    wf = sn.run("..", profile="profiles/local", config={"data": {"generated": {"preset": "tiny"}}})
    wf.display()                     # live progress; the kernel stays free
    wf.wait()
    wf.plots("plots/postfit_*")      # inline
    wf.fit_results()                 # the AGC fit, as a table
    sn.attach("..")                  # from any later kernel

A workflow runs as a process of its own (Snakemake under a small supervisor, in a new
session): closing the browser, restarting the kernel or logging out does not stop it.
"""

from swift_rules.notebook.api import (
    FitResults,
    Workflow,
    WorkflowFailed,
    attach,
    dashboard_link,
    run,
)
from swift_rules.notebook.state import NotebookError
from swift_rules.notebook.status import Status

__all__ = [
    "FitResults",
    "NotebookError",
    "Status",
    "Workflow",
    "WorkflowFailed",
    "attach",
    "dashboard_link",
    "run",
]
