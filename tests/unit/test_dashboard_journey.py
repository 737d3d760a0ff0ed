"""The page's charts, failure reasons, file journey and search, as pure HTML."""

import re
from datetime import datetime, timedelta

from services.dashboard.charts import Series, fill_minutes, line_chart
from services.dashboard.file_journey import Attempt, FileJourney, FileMatch, like_pattern
from services.dashboard.journey_pages import file_body, search_body
from services.dashboard.timeline import group_reasons, reason_of
from shared.pipeline import PIPELINE

T0 = datetime(2026, 12, 6, 10, 0)
MIN = timedelta(minutes=1)
POINT = re.compile(r'data-series="([^"]+)" data-minute="([^"]+)" data-files="(\d+)"')


def test_every_series_spans_the_same_minutes_with_gaps_at_zero() -> None:
    series = fill_minutes({"stt": {T0: 3, T0 + 3 * MIN: 5}, "lid": {T0 + MIN: 2}})
    assert [s.name for s in series] == ["lid", "stt"]
    assert [n for _, n in series[1].points] == [3, 0, 0, 5]
    assert [n for _, n in series[0].points] == [0, 2, 0, 0]


def test_the_chart_has_a_point_per_series_and_minute_with_its_value() -> None:
    series = fill_minutes({"denoise": {T0: 7, T0 + MIN: 9}, "ivr": {T0 + MIN: 4}})
    svg = line_chart("c", series, "files")
    points = {(s, m): int(n) for s, m, n in POINT.findall(svg)}
    assert points == {
        ("denoise", "2026-12-06 10:00"): 7,
        ("denoise", "2026-12-06 10:01"): 9,
        ("ivr", "2026-12-06 10:00"): 0,
        ("ivr", "2026-12-06 10:01"): 4,
    }
    assert svg.count("<polyline") == 2 and 'data-peak="9"' in svg


def test_an_empty_chart_says_so() -> None:
    assert "Nothing has finished yet" in line_chart("c", [], "files")
    assert "Nothing has finished yet" in line_chart("c", [Series("x", ())], "files")


def test_failures_group_by_reason_without_hosts_paths_or_long_numbers() -> None:
    a = "HTTP 422 from http://10.0.0.2:5010/v1/denoise: undecodable audio (1234567 bytes)"
    b = "HTTP 422 from http://10.0.0.3:5010/v1/denoise: undecodable audio (98765 bytes)"
    assert (
        reason_of(a)
        == reason_of(b)
        == "HTTP 422 from <host>/v1/denoise: undecodable audio (N bytes)"
    )
    grouped = group_reasons(
        [("denoise", a, 2), ("denoise", b, 3), ("stt", "HTTP 503", 1), (None, None, 1)]
    )
    assert [(g.stage, g.files) for g in grouped] == [("denoise", 5), ("stt", 1), ("—", 1)]
    assert grouped[2].reason == "no reason recorded"


def test_search_takes_percent_and_underscore_literally() -> None:
    assert like_pattern("call_1%") == "%call!_1!%%"
    assert like_pattern("a!b") == "%a!!b%"


def _attempt(
    stage: str, n: int, status: str, output: object = None, error: str | None = None
) -> Attempt:
    return Attempt(stage, n, status, "10.0.0.2", "http" if error else None, error, T0, 12.0, output)


def test_the_file_page_lists_every_stage_in_flow_order_with_each_attempt() -> None:
    journey = FileJourney(
        "b1", "call.wav", "10.0.0.2", "done", None, None, "stt", "no rule", T0, T0,
        [
            _attempt("denoise", 1, "failure", error="HTTP 503 from host"),
            _attempt("denoise", 2, "success", {"duration_s": 3.0}),
            _attempt("stt", 1, "success", {"transcript": "press one for sales"}),
        ],
    )  # fmt: skip
    html = file_body(journey)
    stages = re.findall(r'<tr data-stage="([^"]+)">', html)
    assert list(dict.fromkeys(stages)) == [row.name for row in PIPELINE]
    assert stages.count("denoise") == 2
    assert "HTTP 503 from host" in html and "press one for sales" in html
    assert "assigned to 10.0.0.2" in html


def test_search_results_link_to_each_file_page() -> None:
    html = search_body("call", [FileMatch("b 1", "call/1.wav", "failed")])
    assert 'href="/batches/b%201/files/call%2F1.wav"' in html
    assert "None." in search_body("zzz", [])
