"""Issue 21's figures 2 and 5: the files a control-plane core moves when work piles up, and
the broker's CPU per file beside the bare chain's, each the median of the instant-model
batches that one run timed through the same pipeline."""

from collections import Counter
from collections.abc import Sequence

from bench import request_count
from bench.fleet_cost import control_plane_cpu, shared_cpu, spread, spread_text
from bench.model_chain import BROKER
from bench.overhead import Chain, TimedBatch
from bench.report import Figure, Section

SATURATION_FIGURE = "Saturation: files per second per control-plane core"
SATURATION_TARGET = 250.0
BROKER_FIGURE = "Broker CPU per file, pipeline / bare chain"
BROKER_TARGET = 2.0
REQUESTS_FIGURE = "Kafka requests per file, pipeline / bare chain"
# Fewer batches than this and the figures say so: one batch's spread is unknown.
MIN_BATCHES = 3


def files_per_core_s(batch: TimedBatch) -> float:
    """Files the batch moved per CPU second of the control plane (simulator left out)."""
    cpu = control_plane_cpu(batch.before, batch.after)
    if cpu <= 0:
        raise ValueError(f"batch {batch.batch_id}: the control plane used no CPU")
    return batch.files / cpu


def broker_cpu_per_file(batch: TimedBatch) -> float | None:
    used = shared_cpu(batch.before, batch.after).get(BROKER)
    return None if used is None else used / batch.files


def chain_broker_per_file(chain: Chain) -> list[float]:
    return [r.broker_cpu_s / r.files for r in chain.runs if r.broker_cpu_s is not None]


def requests_per_file(batch: TimedBatch) -> dict[str, float]:
    """The Kafka requests the services sent during the batch, per file and by kind."""
    sent = request_count.between(batch.before.kafka_requests, batch.after.kafka_requests)
    return {kind: n / batch.files for kind, n in sent.most_common()}


def chain_requests_per_file(chain: Chain) -> list[dict[str, float]]:
    return [
        {kind: n / r.files for kind, n in Counter(r.kafka_requests).most_common()}
        for r in chain.runs
        if r.kafka_requests
    ]


def requests_text(per_kind: dict[str, float]) -> str:
    return ", ".join(f"{kind} {n:.2f}" for kind, n in per_kind.items())


def add_ratio_figure(
    section: Section, name: str, ours: Sequence[float], theirs: Sequence[float], text: str
) -> None:
    """Figure 5's two readings: the pipeline's median over the chain's, and what it means."""
    ratio = spread(ours)[0] / spread(theirs)[0]
    section.figures.append(Figure.at_most(name, ratio, "ratio", BROKER_TARGET))
    section.details += ["", text]


def add_requests_figure(section: Section, batches: Sequence[TimedBatch], chain: Chain) -> None:
    """Figure 5 counted: the requests themselves, each batch's and each chain run's (nothing
    when they were not counted)."""
    ours = [r for r in map(requests_per_file, batches) if r]
    theirs = chain_requests_per_file(chain)
    if not ours or not theirs:
        return
    totals, chain_totals = [sum(r.values()) for r in ours], [sum(r.values()) for r in theirs]
    median = sorted(ours, key=lambda r: sum(r.values()))[len(ours) // 2]
    chain_median = sorted(theirs, key=lambda r: sum(r.values()))[len(theirs) // 2]
    add_ratio_figure(
        section,
        REQUESTS_FIGURE,
        totals,
        chain_totals,
        f"Figure 5 counted: every Kafka request the processes sent during each batch, counted "
        f"in each of them where aiokafka sends it (`bench/request_count.py`; faust's too): the "
        f"pipeline's services sent {spread_text(totals, 2)} requests per file (median, "
        f"lowest-highest of {len(ours)} batches; the median batch's by kind: "
        f"{requests_text(median)}), the bare chain's processes {spread_text(chain_totals, 2)} "
        f"(of {len(theirs)} runs: {requests_text(chain_median)}).",
    )


def saturation_section(batches: Sequence[TimedBatch], chain: Chain | None) -> Section:
    if not batches:
        raise ValueError("no batch was timed")
    rates = [files_per_core_s(b) for b in batches]
    section = Section(
        "Issue 21, figures 2 and 5: saturation, and the broker's share",
        [Figure.at_least(SATURATION_FIGURE, spread(rates)[0], "files/s/core", SATURATION_TARGET)],
    )
    throughput = [b.files / b.makespan_s for b in batches]
    section.details = [
        f"Figure 2: files per CPU second of the control plane (distributor, GPU-stage "
        f"processes, LLM stage, tracker; the simulator left out) while a {batches[0].files:,}-"
        f"file batch at instant models (latency scale 0) piles work on every stage: the median "
        f"of {len(batches)} batches through the same processes, {spread_text(rates)} files/s per "
        f"core; the batches moved {spread_text(throughput)} files/s on this machine's two cores, "
        f"shared with the simulator, the broker and MariaDB. Each batch: "
        + ", ".join(f"{r:.0f}" for r in rates)
        + "."
    ]
    if len(batches) < MIN_BATCHES:
        section.details.append(
            f"Only {len(batches)} batch(es) timed (the time budget or `--only`): the spread "
            f"is not known; the issue asks for at least {MIN_BATCHES}."
        )
    broker = [v * 1000 for v in map(broker_cpu_per_file, batches) if v is not None]
    chain_broker = [v * 1000 for v in chain_broker_per_file(chain)] if chain is not None else []
    if broker and chain_broker:
        add_ratio_figure(
            section,
            BROKER_FIGURE,
            broker,
            chain_broker,
            f"Figure 5: the broker's CPU per file during the pipeline's batches, "
            f"{spread_text(broker, 2)} ms (median, lowest-highest of {len(broker)}), over its "
            f"CPU per file during the bare chain's runs, {spread_text(chain_broker, 2)} ms "
            f"(of {len(chain_broker)}), the same files and model calls. The broker's CPU "
            f"stands in for its request count: each fetch, produce and commit costs it about "
            f"the same, whatever it carries, so the ratio is about how many more requests the "
            f"pipeline makes per file (the tracker's reads count: they are the pipeline's). "
            f"Not a direct count: requests differ in cost with their size, and the broker's "
            f"CPU includes any other run on this machine.",
        )
    else:
        section.details += [
            "",
            "Figure 5 not measured: it needs the bare chain's runs (`--only overhead`) and "
            "the broker's pid file.",
        ]
    if chain is not None:
        add_requests_figure(section, batches, chain)
    return section
