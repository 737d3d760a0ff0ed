"""Who may do what on the broker: one SCRAM user per service and its ACLs (pure).

Derived from `shared.pipeline` (which stage each service runs, what it reads and writes) and
`shared.groups`: a stage added to the table gets its grants without an edit here. A GPU stage's
topics and groups are one per host, so they are granted by prefix (`cofi.stt.`, `cofi-stt-`):
adding a host needs no new ACL, and nothing outside that prefix is reachable.

Kafka's StandardAuthorizer then refuses whatever is not granted (`allow.everyone.if.no.acl.found`
is false): the upload system may write `cofi.uploads` and nothing else. READ and WRITE imply
DESCRIBE, and WRITE on a topic lets the idempotent producer start (KIP-679).
"""

from dataclasses import dataclass
from typing import Final, Literal

from shared.groups import GpuConsumers, stage_group, tracker_group
from shared.pipeline import PIPELINE, Runner, StageSpec, input_topic, output_topic, stages_of
from shared.topics import Topics

ResourceType = Literal["topic", "group"]
# DESCRIBE alone: seeing a group's committed offsets without the right to join it.
Operation = Literal["READ", "WRITE", "DESCRIBE"]
# What stands for the host in a per-host name; the ACL covers every host by the prefix before it.
_ANY_HOST: Final = "\x00"

# The services that reach the broker, each its own SCRAM user (the user's name is the service's).
UPLOAD: Final = "upload"
OPERATOR: Final = "operator"
TRACKER: Final = "tracker"
RUNNERS: Final[tuple[Runner, ...]] = ("distributor", "gpu_stage", "llm_stage")


@dataclass(frozen=True, order=True)
class Resource:
    """A topic or group, by its exact name or by a prefix (`prefixed`)."""

    kind: ResourceType
    name: str
    prefixed: bool = False

    def __str__(self) -> str:
        return f"{self.kind} {self.name}{'*' if self.prefixed else ''}"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: `user` may `operation` on `resource`, from any address."""

    user: str
    operation: Operation
    resource: Resource

    @property
    def principal(self) -> str:
        return f"User:{self.user}"

    def __str__(self) -> str:
        return f"{self.principal} {self.operation} {self.resource}"


def users() -> tuple[str, ...]:
    """Every service user, in the order the plan grants them."""
    return (UPLOAD, *(user_of(runner) for runner in RUNNERS), TRACKER, OPERATOR)


def user_of(runner: Runner) -> str:
    return runner.replace("_", "-")


def _topic(name: str) -> Resource:
    """A topic by name; a per-host name (holding `_ANY_HOST`) becomes its prefix."""
    head, mark, _ = name.partition(_ANY_HOST)
    return Resource("topic", head, prefixed=bool(mark))


def _group(name: str) -> Resource:
    head, mark, _ = name.partition(_ANY_HOST)
    return Resource("group", head, prefixed=bool(mark))


def _stage_input(row: StageSpec, topics: Topics) -> Resource:
    return _topic(input_topic(row.name, topics, _ANY_HOST if row.per_host else None))


def _stage_outputs(row: StageSpec, topics: Topics) -> set[Resource]:
    """Where the stage's completed events go, for every route it may take."""
    routes: list[str | None] = list(row.routes) if row.routes else [None]
    return {_topic(output_topic(row.name, topics, _ANY_HOST, route)) for route in routes}


def _groups_of(row: StageSpec, topics: Topics) -> set[Resource]:
    """The stage's group, whichever way the GPU-stage processes consume (a switch of
    `GPU_STAGE_CONSUMERS` needs no new ACL)."""
    modes: tuple[GpuConsumers, ...] = ("per_stage", "per_host")
    return {_group(stage_group(row, topics, _ANY_HOST, mode)) for mode in modes}


def _runner_grants(runner: Runner, topics: Topics) -> set[Grant]:
    user = user_of(runner)
    rows = stages_of(runner)
    reads = {_stage_input(row, topics) for row in rows} | {_topic(topics.control)}
    writes = {_topic(topics.failed)}
    for row in rows:
        writes |= _stage_outputs(row, topics)
    if runner == "gpu_stage":
        # A drained host hands its files back to the distributor (`FileReassigned`).
        writes.add(_topic(topics.uploads))
    groups = {g for row in rows for g in _groups_of(row, topics)}
    return {Grant(user, "READ", r) for r in reads | groups} | {
        Grant(user, "WRITE", r) for r in writes
    }


def _tracker_grants(topics: Topics) -> set[Grant]:
    """Every topic, its own group; and the stages' groups' committed offsets, which it exports
    as their lag (shared/observability/group_lag.py) so that a dead consumer's lag still
    shows."""
    read = {_stage_input(row, topics) for row in PIPELINE}
    read |= {_topic(t) for t in (topics.done, topics.failed, topics.control)}
    read.add(_group(tracker_group(topics)))
    watched = {g for row in PIPELINE for g in _groups_of(row, topics)}
    return {Grant(TRACKER, "READ", r) for r in read} | {
        Grant(TRACKER, "DESCRIBE", g) for g in watched
    }


def _operator_grants(topics: Topics) -> set[Grant]:
    """`cofi upload`, `submit`, `cancel`, `drain` and the dead-letter tools; `cofi topics`
    creates topics as the broker's admin user, not as this one. `submit` refuses a batch id
    already used: it reads the uploads past the tracker group's committed offsets
    (cli/batch_ids.py), which it may see but not join. `retry` sends failed files, and dead
    letters' raw bytes, back to the input of the stage they failed in (cli/dead_letters.py,
    cli/replay.py), and writes a `DeadLetterReplayed` per replayed letter on the dead-letter
    topic."""
    reads = (topics.uploads, topics.failed, topics.control)
    writes = {_topic(t) for t in (topics.uploads, topics.control, topics.failed)}
    writes |= {_stage_input(row, topics) for row in PIPELINE}
    return (
        {Grant(OPERATOR, "WRITE", r) for r in writes}
        | {Grant(OPERATOR, "READ", _topic(t)) for t in reads}
        | {Grant(OPERATOR, "DESCRIBE", _group(tracker_group(topics)))}
    )


def plan(topics: Topics) -> list[Grant]:
    """Every ACL of the deployment, sorted (one line each in `python -m cli.acls plan`)."""
    grants = {Grant(UPLOAD, "WRITE", _topic(topics.uploads))}
    for runner in RUNNERS:
        grants |= _runner_grants(runner, topics)
    grants |= _tracker_grants(topics) | _operator_grants(topics)
    return sorted(grants)


def granted(
    grants: list[Grant], user: str, operation: Operation, kind: ResourceType, name: str
) -> bool:
    """Whether the plan lets `user` do `operation` on the named topic or group (what the
    broker's authorizer decides for these ALLOW-only ACLs)."""
    for grant in grants:
        r = grant.resource
        if grant.user != user or grant.operation != operation or r.kind != kind:
            continue
        if name == r.name or (r.prefixed and name.startswith(r.name)):
            return True
    return False
