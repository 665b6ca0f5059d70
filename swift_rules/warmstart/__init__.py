"""Warm start: the jobs of a local Snakemake run forked from a process that has the
heavy libraries imported already.

A stage job is a fresh Python process that spends about 1.3 s importing coffea, numba,
awkward, uproot... and 0.8 s setting up numba's compiler before it reads one event; a
merge job spends 0.4 s importing. On the reference workflow that was a third of the wall
time. So, within one Snakemake run on one machine, the first ``swift-rules`` job starts a
server that imports those libraries once, and every job (the *client*) hands the server
its command line, working directory, environment and standard streams (file descriptors
over a Unix socket); the server forks a child that runs the command exactly as the job
would have, and the client exits with the child's status. Python's multiprocessing
"forkserver", across processes.

Limits, on purpose:
- Only jobs that Snakemake runs on this machine use it: ``stages.smk`` sets
  ``SWIFT_RULES_WARM`` (host, Snakemake's pid, socket path) only for local execution,
  and a client on another host ignores it.
- The server lives no longer than the Snakemake process that it serves.
- Only installed libraries and swift-rules' job code are preloaded, not the stages:
  each child imports the stage's module itself, so an edited stage always runs as edited.
  What every job would look up alike is looked up once: the packages' versions and
  entry points (a package installed meanwhile is seen by the next Snakemake run), and
  the imports of swift_rules' modules for the code fingerprint (by file time and size:
  an edited file is parsed again; every file is hashed anew).
- If anything is wrong before the job starts (no server, preload failed, another host),
  the client runs the job in its own process, as without warm start.
Killing a client (Snakemake cancelling the job) kills its child and the child's own
processes (a Dask LocalCluster's workers).

Who may talk to whom (docs/security.md): the job hands the server its whole environment
(tokens included) and its standard streams, and the server runs what it is sent as the
user. So the socket lives in a fresh private folder (``$XDG_RUNTIME_DIR`` where it is the
user's, else ``mkdtemp`` in the temporary folder), checked with ``lstat`` by both sides
(a real folder, the user's, mode 0700); its files are opened without following links;
and each side checks the other's uid with ``SO_PEERCRED``, as ssh-agent, tmux and
multiprocessing's forkserver do. Anything amiss: warm start is off, with one line why.

The two halves: ``client`` (the offer, and each job's hand-over: what the CLI's ``main``
calls) and ``server`` (which runs the CLI in its children), with what both share in
``channel``. Neither half imports the other.
"""

from swift_rules.warmstart.channel import ENV, PRELOAD_ENV, Unavailable
from swift_rules.warmstart.client import address, delegate, offer

__all__ = ["ENV", "PRELOAD_ENV", "Unavailable", "address", "delegate", "offer"]
