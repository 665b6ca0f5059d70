"""swift-rules from a notebook: start a workflow, watch it, attach to it, stop it, and
read its results as Python objects (docs/notebook.md).

    import swift_rules.notebook as sn

    wf = sn.run("..", profile="profiles/local", config={"data": {"generated": {"preset": "tiny"}}})
    wf.display()                     # live progress; the kernel stays free
    wf.wait()
    wf.plots("plots/postfit_*")      # inline
    wf.fit_results()                 # the fit, as a table
    sn.attach("..")                  # from any later kernel

A workflow runs as a process of its own (Snakemake under a small supervisor, in a new
session): closing the browser, restarting the kernel or logging out does not stop it.
"""

# Imported on first use: the supervisor (python -m swift_rules.notebook.supervise) runs
# this file too, and needs none of it.
_API = {
    "FitResults": "api",
    "Workflow": "api",
    "WorkflowFailed": "api",
    "attach": "api",
    "dashboard_link": "api",
    "run": "api",
    "NotebookError": "state",
    "Status": "status",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"swift_rules.notebook.{_API[name]}"), name)
    raise AttributeError(f"module 'swift_rules.notebook' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
