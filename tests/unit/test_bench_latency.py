from bench.latency import STAGES, gaps_per_hop


def test_each_hop_is_the_time_from_one_stage_end_to_the_next_start() -> None:
    # A file uploaded at 0; every stage starts 10 ms after the previous ended and runs 5 ms.
    spans: dict[str, tuple[float, float]] = {}
    t = 0.0
    for stage in STAGES:
        t += 10
        spans[stage] = (t, 5.0)
        t += 5
    gaps = gaps_per_hop({"a.wav": 0.0}, {"a.wav": spans}, {"a.wav": int(t + 3)})
    assert gaps["upload -> denoise"] == [10]
    assert gaps["lid -> triage"] == [10]
    assert gaps["llm1 -> llm2"] == [10]
    assert gaps["llm2 -> done event"] == [3]
    assert gaps["model calls"] == [5.0] * len(STAGES)


def test_files_that_skipped_a_stage_are_left_out() -> None:
    spans = {"b.wav": {"denoise": (1.0, 1.0)}}
    assert gaps_per_hop({"b.wav": 0.0}, spans, {"b.wav": 10}) == {}
