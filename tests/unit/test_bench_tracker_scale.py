from collections import Counter

from bench.tracker_scale import SKIP_EVERY, ScaleRun, batch_events, scale_section, topic_of
from shared.events import BatchClosed, FileStageCompleted
from shared.topics import Topics


def test_a_batch_has_every_stage_of_every_file_and_skips_one_in_ten() -> None:
    events = [e for _, e in batch_events("b", 1_000)]
    skipped = 1_000 // SKIP_EVERY
    assert len(events) == 1_000 * 9 - skipped * 3 + 1
    assert isinstance(events[-1], BatchClosed) and events[-1].file_count == 1_000
    stages = Counter(e.stage for e in events if isinstance(e, FileStageCompleted))
    assert stages["denoise"] == 1_000 and stages["llm2"] == 1_000 - skipped
    topics = Counter(topic_of(e, Topics("p"))[0] for e in events)
    assert topics["p.done"] == 1_000  # llm2 or a triage skip, once per file


def test_the_figure_is_the_big_batch_cpu_per_event_over_the_small_one() -> None:
    small = ScaleRun(10_000, 80_000, 10.0, 40, 8.0, 4.0)  # 100 + 50 us
    big = ScaleRun(100_000, 800_000, 100.0, 400, 88.0, 48.0)  # 110 + 60 us
    figure = scale_section(small, big).figures[0]
    assert figure.name == "tracker CPU per event, 100,000-file batch / 10,000-file batch"
    assert round(figure.value, 3) == round(170 / 150, 3) and figure.met
