"""A run's status at one moment: what the display shows, as plain text and as HTML."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field

# Table cells: compact, whatever the page's own table style (JupyterLab's pads them).
TD = "style='padding:1px 16px 1px 0;text-align:left;border:none'"
ENDED = ("finished", "failed", "stopped", "lost")
COLOURS = {
    "starting": "#6c757d",
    "running": "#0d6efd",
    "stopping": "#fd7e14",
    "finished": "#198754",
    "failed": "#dc3545",
    "stopped": "#fd7e14",
    "lost": "#dc3545",
}


@dataclass
class RuleProgress:
    rule: str
    done: int = 0
    total: int = 0
    running: int = 0
    failed: int = 0


@dataclass
class RunningJob:
    rule: str
    jobid: str
    wildcards: str
    logs: list[str]
    started: float | None


@dataclass
class Failure:
    rule: str
    jobid: str
    wildcards: str
    logs: list[str]
    tail: list[str]


@dataclass
class Status:
    """Where a run stands. ``state``: starting, running, stopping, finished, failed,
    stopped or lost (its process ended without a record: killed, or the machine
    restarted)."""

    state: str
    directory: str
    snakefile: str
    started: float
    ended: float | None = None
    returncode: int | None = None
    done: int = 0
    total: int = 0
    rules: list[RuleProgress] = field(default_factory=list)
    running: list[RunningJob] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    message: str = ""
    error: str = ""
    dashboards: list[tuple[str, str]] = field(default_factory=list)  # (link, direct URL)
    nothing_to_do: bool = False

    @property
    def ended_ok(self) -> bool:
        return self.state == "finished"

    @property
    def is_running(self) -> bool:
        return self.state not in ENDED

    @property
    def elapsed(self) -> float:
        return max(0.0, (self.ended or time.time()) - self.started)

    @property
    def eta(self) -> float | None:
        """Seconds left, from the pace so far (None until a job has finished)."""
        if not self.is_running or not self.done or self.total <= self.done:
            return None
        return self.elapsed * (self.total - self.done) / self.done

    def jobs_run(self) -> dict[str, int]:
        """Rule -> jobs of it that this run finished."""
        return {r.rule: r.done for r in self.rules if r.done}

    # -- plain text ---------------------------------------------------------------------

    def headline(self) -> str:
        if self.state == "starting":
            return f"starting, {_duration(self.elapsed)}"
        text = f"{self.state}: {self.done}/{self.total} jobs, {_duration(self.elapsed)}"
        if self.eta is not None:
            text += f", about {_duration(self.eta)} left"
        if self.message:
            text += f" ({self.message})"
        return text

    def __str__(self) -> str:
        lines = [f"[swift-rules] {self.snakefile}: {self.headline()}"]
        for r in self.rules:
            extra = ", ".join(
                f"{n} {what}" for n, what in ((r.running, "running"), (r.failed, "failed")) if n
            )
            lines.append(f"  {r.rule:<24} {f'{r.done}/{r.total}':>9}  {extra}".rstrip())
        for job in self.running:
            lines.append(f"  running: {job.rule} {job.wildcards}".rstrip())
        for link, _ in self.dashboards:
            lines.append(f"  Dask dashboard: {link}")
        for f in self.failures:
            where = f" (log: {', '.join(f.logs)})" if f.logs else ""
            lines.append(f"  failed: {f.rule} {f.wildcards}{where}".rstrip())
            lines.extend(f"    | {x}" for x in f.tail)
        if self.error:
            lines.extend(f"  {x}" for x in self.error.splitlines())
        return "\n".join(lines)

    # -- HTML (the widget's content) ------------------------------------------------------

    def _repr_html_(self) -> str:
        e = html.escape
        colour = COLOURS.get(self.state, "#6c757d")
        pct = 100 * self.done / self.total if self.total else (100 if self.ended_ok else 0)
        out = [
            f'<div class="swift-rules-progress" data-state="{e(self.state)}" '
            f'data-done="{self.done}" data-total="{self.total}" '
            'style="font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; '
            'max-width: 900px">',
            f"<div><b>{e(self.snakefile)}</b> in <code>{e(self.directory)}</code></div>",
            f'<div style="margin:4px 0"><span style="background:{colour};color:white;'
            f'padding:1px 8px;border-radius:8px">{e(self.state)}</span> '
            f"{self.done}/{self.total} jobs &middot; {_duration(self.elapsed)}",
        ]
        if self.eta is not None:
            out.append(f" &middot; about {_duration(self.eta)} left")
        if self.message:
            out.append(f" &middot; {e(self.message)}")
        out.append("</div>")
        out.append(
            '<div style="background:#e9ecef;height:8px;border-radius:4px;margin:4px 0 8px">'
            f'<div style="background:{colour};width:{pct:.1f}%;height:8px;border-radius:4px">'
            "</div></div>"
        )
        if self.rules:
            out.append(
                '<table style="border-collapse:collapse;line-height:1.3">'
                f"<tr style='text-align:left'><th {TD}>rule</th><th {TD}>done</th>"
                f"<th {TD}>running</th><th {TD}>failed</th></tr>"
            )
            for r in self.rules:
                failed = f'<span style="color:#dc3545">{r.failed}</span>' if r.failed else ""
                out.append(
                    f"<tr><td {TD}><code>{e(r.rule)}</code></td><td {TD}>{r.done}/{r.total}</td>"
                    f"<td {TD}>{r.running or ''}</td><td {TD}>{failed}</td></tr>"
                )
            out.append("</table>")
        if self.running:
            names = ", ".join(e(f"{j.rule} {j.wildcards}".strip()) for j in self.running[:8])
            more = f" and {len(self.running) - 8} more" if len(self.running) > 8 else ""
            out.append(f"<div style='margin-top:6px'>running: {names}{more}</div>")
        for link, direct in self.dashboards:
            title = f' title="{e(direct)}"' if direct != link else ""
            out.append(
                f'<div>Dask dashboard: <a href="{e(link)}" target="_blank"{title}>{e(link)}</a>'
                "</div>"
            )
        for f in self.failures:
            where = f" &middot; log <code>{e(', '.join(f.logs))}</code>" if f.logs else ""
            out.append(
                f"<div style='margin-top:6px;color:#dc3545'>failed: <code>{e(f.rule)}</code> "
                f"{e(f.wildcards)}{where}</div>"
            )
            if f.tail:
                out.append(
                    "<pre style='margin:2px 0 0 12px;font-size:12px'>"
                    + e("\n".join(f.tail))
                    + "</pre>"
                )
        if self.error:
            out.append(
                "<pre style='margin-top:6px;color:#dc3545;white-space:pre-wrap'>"
                + e(self.error)
                + "</pre>"
            )
        out.append("</div>")
        return "".join(out)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
