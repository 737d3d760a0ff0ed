"""Progress for people, the pure parts: rates, ETAs, the terminal view and the page's HTML."""

import json
from datetime import datetime, timedelta

from cli.status import bar, batches_json, batches_view, progress_view, to_text
from services.dashboard.pages import batch_href, batch_page, batches_page
from services.dashboard.progress import (
    NO_HOST,
    BatchRow,
    HostStage,
    StageActivity,
    StageCounts,
    StageProgress,
    batch_progress,
    eta_seconds,
    format_eta,
    host_throughput,
    pipeline_etas,
    stage_rate,
)
from services.dashboard.queries import BatchPage
from shared.stages import STAGES

NOW = datetime(2026, 1, 15, 10, 0, 30)


def _minutes(start: datetime, per_minute: list[int]) -> list[tuple[datetime, int]]:
    return [(start + timedelta(minutes=i), n) for i, n in enumerate(per_minute)]


def _batch(status: str = "InProgress", total: int | None = 1000, **kw: object) -> BatchRow:
    values: dict[str, object] = {
        "batch_id": "b-1",
        "status": status,
        "total_files": total,
        "known_files": 1000,
        "done": 0,
        "skipped": 0,
        "failed": 0,
        "cancelled": 0,
        "created_at": datetime(2026, 1, 15, 9, 0),
        "updated_at": NOW,
    }
    values.update(kw)
    return BatchRow.model_validate(values)


def test_a_running_stage_rate_counts_only_the_recent_whole_minutes() -> None:
    # 10 files a minute for an hour, then 100 a minute for the last six minutes (incl. now's).
    start = datetime(2026, 1, 15, 9, 0)
    activity = StageActivity(
        first_at=start, last_at=NOW, minutes=_minutes(start, [10] * 54 + [100] * 7)
    )
    rate = stage_rate(activity, NOW, running=True, window=timedelta(minutes=5))
    # Buckets from 09:55 on (floor of 09:55:30): six of them, 600 files over 5.5 minutes.
    assert rate == round(600 / 5.5, 1)


def test_a_stage_that_just_started_has_no_rate_until_enough_time_passed() -> None:
    activity = StageActivity(first_at=NOW - timedelta(seconds=2), minutes=[(NOW, 3)])
    assert stage_rate(activity, NOW, running=True) is None
    assert stage_rate(StageActivity(), NOW, running=True) is None


def test_a_stage_that_started_inside_the_window_is_measured_from_its_first_attempt() -> None:
    first = NOW - timedelta(seconds=30)
    activity = StageActivity(first_at=first, minutes=[(datetime(2026, 1, 15, 10, 0), 50)])
    assert stage_rate(activity, NOW, running=True) == 100.0


def test_a_stalled_stage_has_a_zero_rate_and_no_eta() -> None:
    start = datetime(2026, 1, 15, 9, 0)
    activity = StageActivity(first_at=start, minutes=_minutes(start, [100] * 20))
    rate = stage_rate(activity, NOW, running=True)
    assert rate == 0.0
    assert eta_seconds(500, rate) is None


def test_a_finished_stage_rate_is_its_average_over_its_active_span() -> None:
    start = datetime(2026, 1, 15, 9, 0)
    activity = StageActivity(
        first_at=start, last_at=start + timedelta(minutes=4), minutes=_minutes(start, [50] * 4)
    )
    assert stage_rate(activity, NOW, running=False) == 50.0


def test_eta_is_remaining_over_rate_and_zero_when_nothing_remains() -> None:
    assert eta_seconds(300, 60.0) == 300.0
    assert eta_seconds(0, None) == 0.0
    assert eta_seconds(10, None) is None


def test_a_stage_cannot_finish_before_the_stages_upstream() -> None:
    assert pipeline_etas([60.0, 30.0, 120.0, 0.0]) == [60.0, 60.0, 120.0, 120.0]
    assert pipeline_etas([10.0, None, 5.0]) == [10.0, None, None]


def _counts(done: int, failed: int = 0) -> list[StageCounts]:
    return [StageCounts(stage=s, status="InProgress", finished=done, failed=failed) for s in STAGES]


def _activity(per_minute: int) -> dict[str, StageActivity]:
    start = datetime(2026, 1, 15, 9, 50)
    return {
        s: StageActivity(first_at=start, minutes=_minutes(start, [per_minute] * 11)) for s in STAGES
    }


def test_batch_progress_gives_every_stage_a_rate_and_the_batch_the_slowest_eta() -> None:
    counts = _counts(400)
    counts[-1] = StageCounts(stage="llm2", status="InProgress", finished=100)
    activity = _activity(60)
    activity["llm2"] = StageActivity(
        first_at=datetime(2026, 1, 15, 9, 50),
        minutes=_minutes(datetime(2026, 1, 15, 9, 55), [20] * 6),
    )
    p = batch_progress(_batch(), counts, activity, NOW)
    by = {s.stage: s for s in p.stages}
    assert by["denoise"].remaining == 600 and by["denoise"].percent == 40.0
    assert by["denoise"].files_per_min == round(360 / 5.5, 1)
    assert by["llm2"].files_per_min == round(120 / 5.5, 1)
    assert p.eta_s == by["llm2"].eta_s == eta_seconds(900, by["llm2"].files_per_min)
    assert not p.finished


def test_an_open_batch_has_no_eta_and_a_finished_one_has_nothing_left() -> None:
    open_batch = batch_progress(_batch(total=None), _counts(400), _activity(60), NOW)
    assert open_batch.eta_s is None and {s.eta_s for s in open_batch.stages} == {None}
    done = batch_progress(
        _batch(status="Complete", done=990, failed=10), _counts(990, 10), _activity(60), NOW
    )
    assert done.finished and done.eta_s == 0.0
    assert {s.eta_s for s in done.stages} == {0.0}


def test_the_bar_shows_a_single_failure_among_thousands() -> None:
    stage = StageProgress(stage="stt", status="InProgress", total=10_000, finished=5000, failed=1)
    text = bar(stage, width=20).plain
    assert len(text) == 20
    assert text.count("▓") == 1 and text.count("█") == 10 and text.count("░") == 9


def test_the_terminal_view_names_each_stage_with_rate_errors_and_eta() -> None:
    counts = [
        c.model_copy(update={"failed_here": 7, "failed_attempts": 11})
        for c in _counts(400, failed=3)
    ]
    p = batch_progress(_batch(failed=3), counts, _activity(60), NOW)
    text = to_text(progress_view(p))
    assert "batch b-1" in text and "InProgress" in text and "failed 3" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.split()}
    for stage in STAGES:
        assert stage in lines, text
        assert "403/1000" in lines[stage] and "65.5" in lines[stage]
        assert lines[stage].split()[-3:-1] == ["7", "11"]  # failed here, failed attempts
        assert format_eta(p.stages[0].eta_s) in lines[stage]
    assert f"ETA {format_eta(p.eta_s)}" in text


def test_the_batches_list_and_its_json() -> None:
    rows = [_batch(), _batch(status="Complete", batch_id="b-0", done=1000)]
    text = to_text(batches_view(rows))
    assert "b-1" in text and "b-0" in text and "Complete" in text and "1000/1000" in text
    doc = json.loads(batches_json(rows))
    assert [b["batch_id"] for b in doc["batches"]] == ["b-1", "b-0"]
    assert doc["batches"][1]["finished"] is True
    assert "no batches" in to_text(batches_view([]))


def test_eta_formatting() -> None:
    assert [format_eta(s) for s in (None, 0.0, 42.0, 125.0, 7300.0)] == [
        "—",
        "done",
        "42s",
        "2m05s",
        "2h01m",
    ]


def test_host_throughput_adds_up_a_hosts_stages_and_names_the_llm_row() -> None:
    t = datetime(2026, 1, 15, 9, 0)
    rows = [
        HostStage(
            host="127.0.0.2",
            stage="ivr",
            attempts=110,
            files=100,
            failed_attempts=10,
            first_at=t,
            last_at=t + timedelta(minutes=2),
        ),
        HostStage(
            host="127.0.0.2",
            stage="denoise",
            attempts=100,
            files=100,
            failed_attempts=0,
            first_at=t,
            last_at=t + timedelta(minutes=1),
        ),
        HostStage(
            host=None,
            stage="llm1",
            attempts=50,
            files=50,
            failed_attempts=0,
            first_at=t,
            last_at=t + timedelta(minutes=5),
        ),
    ]
    hosts = {h.host: h for h in host_throughput(rows)}
    gpu = hosts["127.0.0.2"]
    assert gpu.stages == ["denoise", "ivr"] and gpu.files == 200 and gpu.files_per_min == 100.0
    assert gpu.error_rate == round(10 / 210, 4)
    assert gpu.last_at == t + timedelta(minutes=2)
    assert hosts[NO_HOST].files_per_min == 10.0


def _page(file_name: str = "call-1.wav") -> BatchPage:
    from services.dashboard.progress import FileFailure

    p = batch_progress(_batch(failed=1), _counts(400, failed=1), _activity(60), NOW)
    return BatchPage(
        progress=p,
        hosts=[],
        failed_files=[
            FileFailure(
                file=file_name,
                stage="denoise",
                host="127.0.0.2",
                error="denoise gave up: HTTP 422 <undecodable>",
                at=NOW,
            )
        ],
        attempt_errors=[],
    )


def test_the_batch_page_shows_each_stage_and_the_failures_escaped() -> None:
    html = batch_page(_page("<script>x</script>.wav"), refresh_s=5)
    assert '<meta http-equiv="refresh" content="5">' in html
    for stage in STAGES:
        assert f'data-stage="{stage}"' in html
    assert "&lt;script&gt;x&lt;/script&gt;.wav" in html and "<script>" not in html
    assert "HTTP 422 &lt;undecodable&gt;" in html
    assert "No attempts yet." in html


def test_the_batches_page_links_each_batch_and_no_refresh_when_off() -> None:
    html = batches_page([_batch(batch_id="a b/c")], refresh_s=0, now=NOW)
    assert f'href="{batch_href("a b/c")}"' in html and batch_href("a b/c") == "/batches/a%20b%2Fc"
    assert "http-equiv" not in html
    assert "No batches yet" in batches_page([], refresh_s=5, now=NOW)
