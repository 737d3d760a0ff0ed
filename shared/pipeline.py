"""The pipeline's graph, defined once: one row per stage, everything else derived from it.

Adding a stage means adding its row here (and its handler); topics, the tracker's columns,
the batch's `status` values, reports and the operator tools read this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from shared.status import Status

if TYPE_CHECKING:
    # Only types here: `Topics` derives the list of every topic, and `shared.stages` the
    # tuples of stage names, from this table.
    from shared.stages import EventStage
    from shared.topics import Topics

Runner = Literal["distributor", "gpu_stage", "llm_stage"]


@dataclass(frozen=True)
class StageSpec:
    """One stage: who runs it, where its input comes from, and where the tracker records it."""

    name: EventStage
    runner: Runner
    per_host: bool  # its input topic is per GPU host (`cofi.<stage>.<host>`)
    status_column: str  # its batchStatus column
    done_value: str  # the batch's `status` once it and every earlier stage are Complete
    flag_column: str | None = None  # its fileDistribution done flag, when it has one
    # Without a flag: the fileDistribution column that holds the stage's decision, set once the
    # file went through it (the distributor's host, triage's route).
    decision_column: str | None = None
    # A stage that chooses each file's way on: route -> the stage the file goes to next, None
    # for `done`. A stage without routes hands every file to the next row.
    routes: Mapping[str, str | None] = field(default_factory=dict, hash=False)


# In flow order. "distribute" is the distributor's host assignment: it reads the uploads.
PIPELINE: Final[tuple[StageSpec, ...]] = (
    StageSpec(
        "distribute",
        "distributor",
        False,
        "dbInsertionStatus",
        "dbInsertionDone",
        decision_column="ip",
    ),
    StageSpec("denoise", "gpu_stage", True, "denoiseStatus", "denoiseDone", "denoiseDone"),
    StageSpec("ivr", "gpu_stage", True, "ivrStatus", "ivrDone", "ivrDone"),
    StageSpec("lid", "gpu_stage", True, "lidStatus", "lidDone", "lidDone"),
    StageSpec(
        "triage",
        "distributor",
        False,
        "triagingStatus",
        "triagingDone",
        decision_column="triageRoute",
        routes={"stt": "stt", "skip": None},
    ),
    StageSpec("stt", "gpu_stage", True, "sttStatus", "sttDone", "sttDone"),
    StageSpec("llm1", "llm_stage", False, "llm1Status", "llm1Done", "llm1Done"),
    StageSpec("llm2", "llm_stage", False, "llm2Status", Status.COMPLETE, "llm2Done"),
)
BY_NAME: Final[dict[str, StageSpec]] = {spec.name: spec for spec in PIPELINE}
# The tracker asks for positions hundreds of times per poll: a lookup, not a search.
_POSITION: Final[dict[str, int]] = {spec.name: i for i, spec in enumerate(PIPELINE)}
# The stage whose routes decide whether a file is transcribed (`routes` above).
TRIAGE: Final = "triage"


def spec(stage: str) -> StageSpec:
    try:
        return BY_NAME[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(BY_NAME)}") from None


def index(stage: str) -> int:
    """Position in the flow: "distribute" is 0, the last stage len(PIPELINE) - 1."""
    try:
        return _POSITION[stage]
    except KeyError:
        spec(stage)  # raises the error that names the stages
        raise


def flow_order(stage: str) -> int:
    """A sort key for stage names: flow order, a name not in the table after every stage."""
    return _POSITION.get(stage, len(PIPELINE))


def previous(stage: str) -> StageSpec | None:
    position = index(stage)
    return PIPELINE[position - 1] if position > 0 else None


def following(stage: str) -> StageSpec | None:
    position = index(stage)
    return PIPELINE[position + 1] if position + 1 < len(PIPELINE) else None


def input_topic(stage: str, topics: Topics, host: str | None = None) -> str:
    """The topic a stage reads: uploads for distribute, `<prefix>.<stage>[.<host>]` otherwise."""
    row = spec(stage)
    if row.name == "distribute":
        return topics.uploads
    if row.per_host:
        if host is None:
            raise ValueError(f"stage {stage} reads a topic per GPU host: name the host")
        return f"{topics.prefix}.{row.name}.{host}"
    return f"{topics.prefix}.{row.name}"


def next_stage(stage: str, route: str | None = None) -> StageSpec | None:
    """The stage a file goes to after `stage` (by `route`, for a stage with routes), or None
    when it goes to `done`."""
    row = spec(stage)
    if not row.routes:
        if route is not None:
            raise ValueError(f"stage {stage} has no routes, got route {route!r}")
        return following(stage)
    if route is None or route not in row.routes:
        raise ValueError(
            f"stage {stage} routes each file by one of {', '.join(row.routes)}, got {route!r}"
        )
    target = row.routes[route]
    return None if target is None else spec(target)


def skipped_by(stage: str, route: str | None = None) -> tuple[StageSpec, ...]:
    """The stages a file never goes through once `stage` sent it by `route`: those between
    `stage` and where the route leads (every later stage, for a route to `done`)."""
    nxt = next_stage(stage, route)
    end = len(PIPELINE) if nxt is None else index(nxt.name)
    return PIPELINE[index(stage) + 1 : end]


def output_topic(
    stage: str, topics: Topics, host: str | None = None, route: str | None = None
) -> str:
    """Where a stage's completed event goes: the input of the stage it leads to (by `route`,
    for a stage with routes), or `done`."""
    nxt = next_stage(stage, route)
    if nxt is None:
        return topics.done
    return input_topic(nxt.name, topics, host)


def stages_of(runner: Runner) -> tuple[StageSpec, ...]:
    return tuple(row for row in PIPELINE if row.runner == runner)


FLAG_COLUMNS: Final[tuple[str, ...]] = tuple(
    row.flag_column for row in PIPELINE if row.flag_column is not None
)
STATUS_COLUMNS: Final[tuple[str, ...]] = tuple(row.status_column for row in PIPELINE)
# Every value of a batch's `status`, in the order a batch takes them.
BATCH_STATUSES: Final[tuple[str, ...]] = (
    Status.PENDING,
    *(row.done_value for row in PIPELINE),
    Status.CANCELLED,
)


def check(rows: tuple[StageSpec, ...]) -> None:
    """Raise if the table is not a graph the services can run: names unique, "distribute"
    first, and every route leads forward (to a later stage or to `done`)."""
    names = [row.name for row in rows]
    if len(set(names)) != len(names) or not names or names[0] != "distribute":
        raise ValueError(f"shared/pipeline.py: stages must be unique, distribute first: {names}")
    if rows[-1].done_value != Status.COMPLETE:
        raise ValueError("shared/pipeline.py: the last stage's done_value must be Complete")
    for position, row in enumerate(rows):
        for route, target in row.routes.items():
            if target is not None and target not in names[position + 1 :]:
                raise ValueError(
                    f"shared/pipeline.py: route {route!r} of {row.name} leads to {target!r},"
                    " not a later stage"
                )


check(PIPELINE)
