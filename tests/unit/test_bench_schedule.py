import pytest

from bench.schedule import (
    StageLoad,
    bottleneck,
    file_stage_work,
    fluid_bound,
    ideal_makespan,
    stage_after_stage_makespan,
)

LOADS = [
    StageLoad("denoise", 1000, 0.040, 16),  # 2.5 s busy
    StageLoad("ivr", 1000, 0.020, 16),  # 1.25 s
    StageLoad("stt", 900, 0.200, 16),  # 11.25 s: the bottleneck
    StageLoad("llm1", 900, 0.050, 32),  # 1.40625 s
]


def test_the_bottleneck_is_the_stage_with_the_most_work_per_slot() -> None:
    assert bottleneck(LOADS).stage == "stt"


def test_ideal_is_bottleneck_busy_time_plus_one_file_through_the_other_stages() -> None:
    assert ideal_makespan(LOADS) == pytest.approx(11.25 + 0.040 + 0.020 + 0.050)


def test_stage_after_stage_adds_every_stage_busy_time() -> None:
    assert stage_after_stage_makespan(LOADS) == pytest.approx(2.5 + 1.25 + 11.25 + 1.40625)


def test_a_stage_no_file_reached_adds_nothing_to_the_path() -> None:
    loads = [StageLoad("denoise", 10, 0.1, 1), StageLoad("stt", 0, 0.5, 1)]
    assert ideal_makespan(loads) == pytest.approx(1.0)


def test_the_fluid_bound_is_the_busiest_stage_or_the_longest_file() -> None:
    files = [
        (("denoise", "stt"), (1.0, 3.0)),
        (("denoise",), (2.0,)),  # triaged out before STT
        (("denoise", "stt"), (1.0, 1.0)),
    ]
    works, longest = file_stage_work(files, {"denoise": 2, "stt": 1})
    assert [(w.stage, w.work_s, w.busy_s) for w in works] == [
        ("denoise", 4.0, 2.0),
        ("stt", 4.0, 4.0),
    ]
    assert longest == 4.0
    assert fluid_bound(works, longest) == 4.0
    assert fluid_bound(works, 9.0) == 9.0  # one hour-long call outlasts everything else
