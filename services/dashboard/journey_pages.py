"""HTML (pure) for a batch's charts and failure reasons, a file's journey, and file search."""

import json
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from services.dashboard.charts import line_chart
from services.dashboard.file_journey import FileJourney, FileMatch
from services.dashboard.timeline import FailureReason, Timeline
from shared.pipeline import PIPELINE, StageSpec

JOURNEY_CSS = """
.chart{width:100%;max-width:880px;height:auto;background:#fff;border:1px solid #dde2ec}
.chart text{font-size:11px;fill:#5b6478}.chart .axis{stroke:#aab3c5}
.chart-box{margin:0}
.out{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word;
max-width:760px}
form.search{margin-left:auto}form.search input{padding:3px 6px;border-radius:4px;border:0}
.s-done{color:#2f9e44}.s-failed{color:#e03131}.s-skipped{color:#5b6478}.s-success{color:#2f9e44}
.s-failure{color:#e03131}
"""


def file_href(batch_id: str, file: str) -> str:
    return f"/batches/{quote(batch_id, safe='')}/files/{quote(file, safe='')}"


def search_form(query: str = "") -> str:
    return (
        '<form class="search" action="/search" method="get">'
        f'<input name="q" placeholder="file name" value="{escape(query)}" aria-label="file name">'
        "</form>"
    )


def charts_section(t: Timeline) -> str:
    return (
        "<h2>Files per minute, per stage</h2>"
        + line_chart("chart-stages", t.stages, "files finished per minute")
        + "<h2>Stages finished per minute, per GPU host</h2>"
        + line_chart("chart-hosts", t.hosts, "stages finished per minute")
    )


def reasons_section(reasons: list[FailureReason]) -> str:
    if not reasons:
        return '<p class="empty">No file has failed.</p>'
    rows = "".join(
        f'<tr><td>{escape(r.stage)}</td><td class="err">{escape(r.reason)}</td>'
        f'<td class="num">{r.files}</td></tr>'
        for r in reasons
    )
    return (
        '<table id="failure-reasons"><tr><th>stage</th><th>reason</th>'
        '<th class="num">files</th></tr>' + rows + "</table>"
    )


def _time(t: datetime | None) -> str:
    return "—" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def _state(value: str | None) -> str:
    v = value or "in progress"
    return f'<span class="status s-{escape(v)}">{escape(v)}</span>'


def _output(value: Any) -> str:
    if value is None:
        return '<span class="empty">—</span>'
    shown = value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False)
    return f'<div class="out">{escape(shown)}</div>'


def file_body(j: FileJourney) -> str:
    facts = (
        f'<div class="meta">batch <a href="/batches/{quote(j.batch_id, safe="")}">'
        f"{escape(j.batch_id)}</a> · host {escape(j.host or '—')} · created "
        f"{_time(j.created_at)} · ended {_time(j.finished_at)}"
        + (f" · triage: {escape(j.triage_route)} ({escape(j.triage_reason or '')})"
           if j.triage_route else "")
        + "</div>"
    )  # fmt: skip
    failure = (
        f'<p class="err">failed at {escape(j.failed_stage or "—")}: {escape(j.failed_error or "")}'
        "</p>"
        if j.terminal_state == "failed"
        else ""
    )
    by_stage: dict[str, list[Any]] = {}
    for a in j.attempts:
        by_stage.setdefault(a.stage, []).append(a)
    known: dict[str, StageSpec] = {row.name: row for row in PIPELINE}
    rows = []
    for stage in [*known, *(s for s in by_stage if s not in known)]:
        attempts = by_stage.get(stage)
        if not attempts:
            spec = known.get(stage)
            # The host assignment makes no model call: its decision is the file's host.
            note = (
                f"assigned to {escape(j.host)}"
                if spec is not None and spec.decision_column == "ip" and j.host
                else "no attempt"
            )
            rows.append(
                f'<tr data-stage="{escape(stage)}"><td>{escape(stage)}</td>'
                f'<td colspan="6" class="empty">{note}</td></tr>'
            )
            continue
        for a in attempts:
            rows.append(
                f'<tr data-stage="{escape(stage)}"><td>{escape(stage)}</td>'
                f'<td class="num">{a.attempt or ""}</td><td>{_state(a.status)}</td>'
                f'<td>{escape(a.host or "—")}</td><td class="t">{_time(a.started_at)}</td>'
                f'<td class="num">{"" if a.duration_ms is None else f"{a.duration_ms:.0f} ms"}</td>'
                f"<td>{_output(a.output) if a.status == 'success' else _error(a)}</td></tr>"
            )
    table = (
        '<table id="attempts"><tr><th>stage</th><th class="num">attempt</th><th>result</th>'
        '<th>host</th><th>started</th><th class="num">took</th><th>output or error</th></tr>'
        + "".join(rows)
        + "</table>"
    )
    return (
        f"<h1>File {escape(j.file)} {_state(j.terminal_state)}</h1>{facts}{failure}"
        f"<h2>Stages and attempts</h2>{table}"
    )


def _error(a: Any) -> str:
    kind = f"[{escape(a.error_kind)}] " if a.error_kind else ""
    return f'<span class="err">{kind}{escape(a.error or "")}</span>'


def search_body(query: str, matches: list[FileMatch]) -> str:
    if not query:
        return "<h1>Find a file</h1><p>Type part of a file name in the box above.</p>"
    if not matches:
        return f'<h1>Files matching “{escape(query)}”</h1><p class="empty">None.</p>'
    rows = "".join(
        f'<tr><td class="file"><a href="{file_href(m.batch_id, m.file)}">{escape(m.file)}</a>'
        f"</td><td>{escape(m.batch_id)}</td><td>{_state(m.terminal_state)}</td></tr>"
        for m in matches
    )
    return (
        f"<h1>Files matching “{escape(query)}”</h1>"
        '<table id="matches"><tr><th>file</th><th>batch</th><th>state</th></tr>' + rows + "</table>"
    )
