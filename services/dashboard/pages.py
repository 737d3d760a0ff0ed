"""The progress page's HTML (pure): plain HTML and CSS, reloaded by a meta refresh."""

from collections.abc import Iterable
from datetime import datetime
from html import escape
from urllib.parse import quote

from services.dashboard.journey_pages import (
    JOURNEY_CSS,
    charts_section,
    file_href,
    reasons_section,
    search_form,
)
from services.dashboard.progress import (
    BatchRow,
    StageProgress,
    format_eta,
    format_rate,
)
from services.dashboard.queries import BatchPage
from services.dashboard.timeline import FailureReason, Timeline

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;
background:#f4f6fa}
header{background:#1d2433;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600;font-size:18px}
header span{color:#aab3c5}
main{padding:16px 24px;max-width:1220px}
h1{font-size:20px;margin:8px 0 4px}h2{font-size:16px;margin:24px 0 8px}
.meta{color:#5b6478;margin-bottom:8px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{background:#fff;border:1px solid #dde2ec;border-radius:6px;padding:8px 14px;min-width:96px}
.card b{display:block;font-size:20px}.card small{color:#5b6478}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde2ec}
th,td{padding:6px 10px;border-bottom:1px solid #eef1f6;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600;font-size:13px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:flex;height:14px;width:260px;background:#e3e7ef;border-radius:3px;overflow:hidden}
.bar i{display:block;height:100%}
.finished{background:#2f9e44}.skipped{background:#8d99ae}.failed{background:#e03131}
.cancelled{background:#f08c00}
.status{font-weight:600}.s-Complete{color:#2f9e44}.s-InProgress{color:#1c7ed6}
.s-Pending{color:#5b6478}.s-Cancelled{color:#f08c00}
.err{font-family:ui-monospace,monospace;font-size:12px;color:#a61e4d;word-break:break-word}
.file{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all;min-width:14em;
max-width:360px}
.t{white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;border-radius:2px}
.empty{color:#5b6478;font-style:italic}
"""


def _time(t: datetime | None) -> str:
    return "—" if t is None else t.strftime("%Y-%m-%d %H:%M:%S")


def _tcell(t: datetime | None) -> str:
    return f'<td class="t">{_time(t)}</td>'


def _status(value: str) -> str:
    return f'<span class="status s-{escape(value)}">{escape(value)}</span>'


def batch_href(batch_id: str) -> str:
    return "/batches/" + quote(batch_id, safe="")


def _bar(total: int, parts: Iterable[tuple[str, int]]) -> str:
    spans = "".join(
        f'<i class="{cls}" style="width:{100.0 * n / total:.2f}%" title="{cls}: {n}"></i>'
        for cls, n in parts
        if total and n
    )
    return f'<div class="bar">{spans}</div>'


def layout(title: str, body: str, refresh_s: int, now: datetime) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8">{refresh}'
        f"<title>{escape(title)} · cofi</title><style>{CSS}{JOURNEY_CSS}</style></head><body>"
        '<header><a href="/">cofi batches</a>'
        f"<span>as of {_time(now)} UTC"
        + (f" · reloads every {refresh_s}s" if refresh_s else "")
        + f"</span>{search_form()}</header><main>{body}</main></body></html>\n"
    )


def batches_page(rows: list[BatchRow], refresh_s: int, now: datetime) -> str:
    if not rows:
        table = '<p class="empty">No batches yet: the tracker has not seen an upload.</p>'
    else:
        lines = []
        for b in rows:
            total = b.total_files if b.total_files is not None else b.known_files
            ended = b.done + b.skipped + b.failed + b.cancelled
            bar = _bar(
                total,
                (
                    ("finished", b.done),
                    ("skipped", b.skipped),
                    ("failed", b.failed),
                    ("cancelled", b.cancelled),
                ),
            )
            lines.append(
                "<tr>"
                f'<td><a href="{batch_href(b.batch_id)}">{escape(b.batch_id)}</a></td>'
                f"<td>{_status(b.status)}</td><td>{bar}</td>"
                f'<td class="num">{ended}/{b.total_files if b.total_files is not None else "?"}'
                f'</td><td class="num">{b.done}</td><td class="num">{b.skipped}</td>'
                f'<td class="num">{b.failed}</td>'
                f"{_tcell(b.created_at)}{_tcell(b.updated_at)}</tr>"
            )
        table = (
            '<table id="batches"><tr><th>batch</th><th>status</th><th>progress</th>'
            '<th class="num">files</th><th class="num">done</th><th class="num">skipped</th>'
            '<th class="num">failed</th><th>created</th><th>updated</th></tr>'
            + "".join(lines)
            + "</table>"
        )
    return layout("batches", f"<h1>Recent batches</h1>{table}", refresh_s, now)


def _stage_row(s: StageProgress) -> str:
    bar = _bar(
        s.total,
        (
            ("finished", s.finished),
            ("skipped", s.skipped),
            ("failed", s.failed),
            ("cancelled", s.cancelled),
        ),
    )
    return (
        f'<tr data-stage="{escape(s.stage)}"><td>{escape(s.stage)}</td><td>{_status(s.status)}</td>'
        f"<td>{bar}</td>"
        f'<td class="num">{s.ended}/{s.total}</td><td class="num">{s.percent:.1f}%</td>'
        f'<td class="num">{s.skipped}</td><td class="num">{s.failed_here}</td>'
        f'<td class="num">{s.failed_attempts}</td>'
        f'<td class="num">{format_rate(s.files_per_min)}</td>'
        f'<td class="num">{format_eta(s.eta_s)}</td></tr>'
    )


def batch_page(
    page: BatchPage,
    refresh_s: int,
    timeline: Timeline | None = None,
    reasons: list[FailureReason] | None = None,
) -> str:
    p = page.progress
    b = p.batch
    total = "?" if b.total_files is None else str(b.total_files)
    cards = "".join(
        f'<div class="card"><b>{value}</b><small>{label}</small></div>'
        for label, value in (
            ("files", f"{b.known_files}/{total}"),
            ("done", b.done),
            ("skipped", b.skipped),
            ("failed", b.failed),
            ("cancelled", b.cancelled),
            ("ETA", format_eta(p.eta_s)),
        )
    )
    legend = (
        '<div class="legend meta">'
        + "".join(f'<i class="{c}"></i>{c}' for c in ("finished", "skipped", "failed", "cancelled"))
        + "</div>"
    )
    stages = (
        '<table id="stages"><tr><th>stage</th><th>status</th><th>progress</th>'
        '<th class="num">ended</th><th class="num">%</th><th class="num">skipped</th>'
        '<th class="num">failed files</th><th class="num">failed attempts</th>'
        '<th class="num">rate</th><th class="num">ETA</th></tr>'
        + "".join(_stage_row(s) for s in p.stages)
        + "</table>"
    )
    body = (
        f"<h1>Batch {escape(b.batch_id)} {_status(b.status)}</h1>"
        f'<div class="meta">created {_time(b.created_at)} · updated {_time(b.updated_at)}'
        + (f" · completed {_time(b.completed_at)}" if b.completed_at else "")
        + f'</div><div class="cards">{cards}</div>'
        f"<h2>Stages</h2>{legend}{stages}"
        + (charts_section(timeline) if timeline is not None else "")
        + f"<h2>Hosts</h2>{_hosts(page)}"
        f"<h2>Failures by reason</h2>{reasons_section(reasons or [])}"
        f"<h2>Failed files</h2>{_failures(page, b.batch_id)}"
        f"<h2>Recent failed attempts</h2>{_attempt_errors(page)}"
        f"<h2>Dead letters (rejected uploads, poison messages)</h2>{_dead_letters(page)}"
    )
    return layout(f"batch {b.batch_id}", body, refresh_s, p.as_of)


def _hosts(page: BatchPage) -> str:
    if not page.hosts:
        return '<p class="empty">No attempts yet.</p>'
    rows = "".join(
        f"<tr><td>{escape(h.host)}</td><td>{escape(', '.join(h.stages))}</td>"
        f'<td class="num">{h.files}</td><td class="num">{format_rate(h.files_per_min)}</td>'
        f'<td class="num">{h.failed_attempts}</td><td class="num">{100 * h.error_rate:.1f}%</td>'
        f"{_tcell(h.last_at)}</tr>"
        for h in page.hosts
    )
    return (
        '<table id="hosts"><tr><th>host</th><th>stages</th><th class="num">files</th>'
        '<th class="num">throughput</th><th class="num">failed attempts</th>'
        '<th class="num">error rate</th><th>last attempt</th></tr>' + rows + "</table>"
    )


def _failures(page: BatchPage, batch_id: str) -> str:
    if not page.failed_files:
        return '<p class="empty">No file has failed.</p>'
    rows = "".join(
        f'<tr><td class="file"><a href="{file_href(batch_id, f.file)}">{escape(f.file)}</a></td>'
        f"<td>{escape(f.stage or '—')}</td>"
        f'<td>{escape(f.host or "—")}</td><td class="err">{escape(f.error or "")}</td>'
        f"{_tcell(f.at)}</tr>"
        for f in page.failed_files
    )
    return (
        '<table id="failures"><tr><th>file</th><th>stage</th><th>host</th><th>error</th>'
        "<th>failed at</th></tr>" + rows + "</table>"
    )


def _dead_letters(page: BatchPage) -> str:
    if not page.dead_letters:
        return '<p class="empty">None.</p>'
    rows = "".join(
        f'<tr><td class="file">{escape(d.file or "—")}</td><td>{escape(d.stage or "—")}</td>'
        f'<td>{escape(d.host or "")}</td><td class="err">{escape(d.error or "")}</td>'
        f"{_tcell(d.at)}</tr>"
        for d in page.dead_letters
    )
    return (
        '<table id="dead-letters"><tr><th>file</th><th>stage</th><th>source</th><th>reason</th>'
        "<th>at</th></tr>" + rows + "</table>"
    )


def _attempt_errors(page: BatchPage) -> str:
    if not page.attempt_errors:
        return '<p class="empty">No attempt has failed.</p>'
    rows = "".join(
        f'<tr><td class="file">{escape(a.file)}</td><td>{escape(a.stage)}</td>'
        f'<td>{escape(a.host or "—")}</td><td class="num">{a.attempt or ""}</td>'
        f'<td>{escape(a.kind or "")}</td><td class="err">{escape(a.error or "")}</td>'
        f"{_tcell(a.at)}</tr>"
        for a in page.attempt_errors
    )
    return (
        '<table id="attempt-errors"><tr><th>file</th><th>stage</th><th>host</th>'
        '<th class="num">attempt</th><th>kind</th><th>error</th><th>started</th></tr>'
        + rows
        + "</table>"
    )


def message_page(title: str, message: str, refresh_s: int, now: datetime) -> str:
    return layout(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>", refresh_s, now)
