"""Issue 21's figures 2 and 5 (bench.saturation): files per control-plane core at saturation,
and the broker's CPU per file over the bare chain's."""

import pytest

from bench.model_chain import ChainRun
from bench.overhead import Chain, TimedBatch
from bench.saturation import (
    BROKER_FIGURE,
    REQUESTS_FIGURE,
    SATURATION_FIGURE,
    files_per_core_s,
    saturation_section,
)
from tests.bench_helpers import timed_batch_of


def _chain(broker_s: list[float], files: int = 1000) -> Chain:
    runs = [ChainRun(files, 10.0, {"chain-gpu": 1.0}, 0.0, b, files) for b in broker_s]
    return Chain(runs, {}, "", 0.0)


def test_files_per_core_s_leaves_the_simulator_out() -> None:
    assert files_per_core_s(timed_batch_of(1000, 4.0, None)) == pytest.approx(250.0)


def test_the_saturation_figure_is_the_median_batch_against_its_target() -> None:
    batches = [timed_batch_of(1000, cpu, None) for cpu in (8.0, 2.0, 5.0)]  # 125, 500, 200 files/s
    section = saturation_section(batches, None)
    figure = next(f for f in section.figures if f.name == SATURATION_FIGURE)
    assert figure.value == pytest.approx(200.0)
    assert figure.target == ">= 250" and figure.met is False
    assert "200 (125-500)" in section.details[0]
    assert not any(f.name == BROKER_FIGURE for f in section.figures)
    assert any("Figure 5 not measured" in line for line in section.details)


def test_one_batch_says_its_spread_is_unknown() -> None:
    section = saturation_section([timed_batch_of(1000, 2.0, None)], None)
    assert section.figures[0].met is True
    assert any("spread is not known" in line for line in section.details)


def test_the_broker_figure_divides_the_medians_per_file() -> None:
    # Pipeline: 3, 2 and 4 ms per file -> 3; chain: 1, 1.5 and 0.5 ms -> 1.
    batches = [timed_batch_of(1000, 4.0, broker) for broker in (3.0, 2.0, 4.0)]
    section = saturation_section(batches, _chain([1.0, 1.5, 0.5]))
    figure = next(f for f in section.figures if f.name == BROKER_FIGURE)
    assert figure.value == pytest.approx(3.0)
    assert figure.target == "<= 2" and figure.met is False


def test_no_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="no batch"):
        saturation_section([], None)


def _counted(batch: TimedBatch, before: dict[str, int], after: dict[str, int]) -> TimedBatch:
    batch.before.kafka_requests.update(before)
    batch.after.kafka_requests.update(after)
    return batch


def test_the_counted_requests_figure_divides_the_medians_per_file() -> None:
    # Pipeline, per file: 30, 20 and 40 requests -> 30; chain: 5, 6 and 4 -> 5.
    batches = [
        _counted(timed_batch_of(1000, 4.0, 3.0), {"Fetch": 7}, {"Fetch": 7 + n, "Produce": n})
        for n in (15_000, 10_000, 20_000)
    ]
    chain = _chain([1.0, 1.0, 1.0])
    for run, n in zip(chain.runs, (5000, 6000, 4000), strict=True):
        run.kafka_requests.update({"Fetch": n})
    section = saturation_section(batches, chain)
    figure = next(f for f in section.figures if f.name == REQUESTS_FIGURE)
    assert figure.value == pytest.approx(6.0)
    assert figure.target == "<= 2" and figure.met is False
    counted = next(line for line in section.details if line.startswith("Figure 5 counted"))
    assert "30.00 (20.00-40.00) requests per file" in counted
    assert "Fetch 15.00, Produce 15.00" in counted and "5.00 (4.00-6.00)" in counted


def test_requests_not_counted_make_no_figure() -> None:
    section = saturation_section([timed_batch_of(1000, 4.0, 3.0)], _chain([1.0]))
    assert not any(f.name == REQUESTS_FIGURE for f in section.figures)
