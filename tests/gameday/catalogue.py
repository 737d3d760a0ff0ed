"""The game day's catalogue of faults, as data: one entry per kind of fault, with how it
starts, how it stops, how long it may last, what it needs, and what the pipeline must do.

Every fault of the crash suite (`tests/crash/scenarios.py`; `crash` names the scenario) and
every fault issue 19 lists (`issue`) is here. `may_fail` is a pattern of the `failedError` a
file may end with because of the fault (hostile input, a broken answer, an over-large
output): anything else a transient fault makes fail breaks an invariant."""

from tests.gameday import faults_inputs as inputs
from tests.gameday import faults_services as svc
from tests.gameday.catalogue_issue import ISSUE_19
from tests.gameday.kinds import KILL_HOLD, NO_FILE_FAILS, FaultKind
from tests.gameday.kinds import kind as _kind

N = svc.nothing

CRASH_SUITE: tuple[FaultKind, ...] = (
    # -- the crash suite -------------------------------------------------------------------
    _kind(
        "kill_distributor",
        "kill -9 the distributor, restart it",
        svc.kill9("distributor"),
        NO_FILE_FAILS,
        hold_s=KILL_HOLD,
        crash="kill_each_service",
    ),
    _kind(
        "kill_gpu_stage",
        "kill -9 a GPU host's stage while long calls run, restart it",
        svc.kill9("gpu"),
        NO_FILE_FAILS,
        hold_s=KILL_HOLD,
        crash="heavy_tail_gpu_kill",
    ),
    _kind(
        "kill_llm_stage",
        "kill -9 the LLM stage, restart it",
        svc.kill9("llm"),
        NO_FILE_FAILS,
        hold_s=KILL_HOLD,
        crash="kill_each_service",
    ),
    _kind(
        "kill_tracker",
        "kill -9 the tracker, restart it",
        svc.kill9("tracker"),
        "the tables catch up; no event lost or doubled",
        hold_s=KILL_HOLD,
        crash="kill_each_service",
    ),
    FaultKind(
        "kill_broker",
        "kill -9 the broker, start it again",
        svc.kill_broker,
        svc.start_broker,
        NO_FILE_FAILS,
        (5.0, 30.0),
        "private-kafka",
        "kill_broker",
    ),
    FaultKind(
        "database_down",
        "stop MariaDB, start it again",
        svc.stop_database,
        svc.start_database,
        "the tracker waits and catches up",
        (20.0, 60.0),
        "private-mariadb",
        "stop_database",
    ),
    FaultKind(
        "database_lost",
        "drop the tracker's database; a fresh tracker rebuilds it",
        svc.lose_database,
        N,
        "the rebuilt tables equal a rebuild from the topics",
        (0.0, 0.0),
        crash="database_lost",
    ),
    FaultKind(
        "scale_gpu_consumers",
        "a GPU host's stage 1 -> 3 processes, later back to 1",
        svc.scale_gpu_up,
        svc.scale_down,
        NO_FILE_FAILS,
        (15.0, 60.0),
        crash="scale_consumers, scale_up_mid_batch",
    ),
    FaultKind(
        "scale_llm_consumers",
        "the LLM stage 1 -> 2 processes, later back to 1",
        svc.scale_llm_up,
        svc.scale_down,
        NO_FILE_FAILS,
        (15.0, 60.0),
        crash="scale_consumers",
    ),
    _kind(
        "faulty_gpu_host",
        "a GPU host answers 20% 503 and 10% hangs",
        svc.gpu_knobs(
            {"error_rate": 0.2, "timeout_rate": 0.1, "hang_s": 4.0},
            {"error_rate": 0.0, "timeout_rate": 0.0, "hang_s": 30.0},
        ),
        NO_FILE_FAILS,
        hold_s=(30.0, 90.0),
        crash="faulty_host",
    ),
    _kind(
        "gpu_host_dead",
        "a GPU host down past the failover deadline (20 s)",
        svc.gpu_knobs({"down": True}, {"down": False}),
        "its files fail over to the other hosts; none fails",
        hold_s=(40.0, 90.0),
        crash="host_dead_fails_over",
    ),
    _kind(
        "gpu_host_outage",
        "a GPU host down for less than the failover deadline",
        svc.gpu_knobs({"down": True}, {"down": False}),
        "its stage pauses and heals; none fails",
        hold_s=(5.0, 15.0),
        crash="host_outage_recovers",
    ),
    _kind(
        "llm_auth_outage",
        "the LLM answers 401 (its key refused)",
        svc.llm_knobs({"unauthorized": True}, {"unauthorized": False}),
        "the LLM stages pause and heal; none fails",
        hold_s=(15.0, 60.0),
        crash="llm_auth_outage",
    ),
    FaultKind(
        "rolling_restart",
        "SIGTERM every service in turn, start it again",
        svc.rolling_restart,
        N,
        NO_FILE_FAILS,
        (0.0, 0.0),
        crash="rolling_restart",
    ),
    FaultKind(
        "poison_messages",
        "poison messages on every topic",
        inputs.poison,
        N,
        "each is dead-lettered with its raw bytes; nothing else moves",
        (0.0, 0.0),
        crash="poison_and_duplicates",
    ),
    FaultKind(
        "duplicate_events",
        "copies of stage events already on their topics",
        inputs.duplicates,
        N,
        "no row doubled; no file ends twice",
        (0.0, 0.0),
        crash="poison_and_duplicates",
    ),
    FaultKind(
        "upload_after_complete",
        "an upload into a batch that has finished",
        inputs.late_after_complete,
        N,
        "rejected (a dead letter); the batch stays finished",
        (0.0, 0.0),
        crash="late_upload",
    ),
    FaultKind(
        "broker_leader_killed",
        "kill -9 a broker of the 3-node cluster, restart it",
        svc.kill_cluster_node,
        svc.start_cluster_node,
        NO_FILE_FAILS,
        (10.0, 40.0),
        "private-cluster",
        "broker_leader_killed",
    ),
    FaultKind(
        "controller_killed",
        "kill -9 the cluster's active controller, restart it",
        svc.kill_controller,
        svc.start_cluster_node,
        NO_FILE_FAILS,
        (10.0, 40.0),
        "private-cluster",
        "controller_killed",
    ),
    FaultKind(
        "brokers_rolling_restart",
        "restart the cluster's brokers one after another",
        svc.roll_cluster,
        N,
        NO_FILE_FAILS,
        (0.0, 0.0),
        "private-cluster",
        "brokers_rolling_restart",
    ),
)
CATALOGUE = (*CRASH_SUITE, *ISSUE_19)
BY_NAME = {k.name: k for k in CATALOGUE}


def eligible(available: set[str]) -> list[FaultKind]:
    """The kinds this game day's infrastructure can run ("shared" is always there)."""
    return [k for k in CATALOGUE if k.needs in available | {"shared"}]
