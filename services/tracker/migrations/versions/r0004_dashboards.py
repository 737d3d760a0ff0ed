"""Dashboard views, and the columns of a cancelled batch.

- `batchStatus.cancelledFiles`, `cancelledAt`, `cancelReason`: set from `BatchCancelled`.
- Views, the queries dashboards need (ARCHITECTURE.md, "Dashboards"):
  `v_batch_stage_progress` (a row per batch and stage), `v_stage_files_per_minute`,
  `v_stage_error_rate`, `v_host_error_rate`, `v_file_durations` (the slowest files).

The SQL is frozen here on purpose: a later change to a view is a new revision that drops and
recreates it. On SQLite, a later revision that rebuilds a table these views read (a batch
`alter_column`) must drop the views first and recreate them after, because SQLite refuses to
rename the rebuilt table while a view names it.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from services.tracker.tables import Timestamp

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (stage, its order, its batchStatus column); 'distribute' is the host assignment.
_STAGES = (
    ("distribute", 0, "dbInsertionStatus"),
    ("denoise", 1, "denoiseStatus"),
    ("ivr", 2, "ivrStatus"),
    ("lid", 3, "lidStatus"),
    ("triage", 4, "triagingStatus"),
    ("stt", 5, "sttStatus"),
    ("llm1", 6, "llm1Status"),
    ("llm2", 7, "llm2Status"),
)
# What shows that a file finished the stage of that order (services/tracker/batch_status.py).
_FINISHED_SIGN = (
    "f.ip IS NOT NULL",
    "COALESCE(f.denoiseDone, 0) = 1",
    "COALESCE(f.ivrDone, 0) = 1",
    "COALESCE(f.lidDone, 0) = 1",
    "f.triageRoute IS NOT NULL",
    "COALESCE(f.sttDone, 0) = 1",
    "COALESCE(f.llm1Done, 0) = 1",
    "(COALESCE(f.llm2Done, 0) = 1 OR f.terminalState = 'done')",
)
_FAILED_ORDER = (
    "CASE f.failedStage "
    + " ".join(f"WHEN '{stage}' THEN {order}" for stage, order, _ in _STAGES)
    + " ELSE 0 END"
)
VIEWS = (
    "v_batch_stage_progress",
    "v_stage_files_per_minute",
    "v_stage_error_rate",
    "v_host_error_rate",
    "v_file_durations",
)


def _outcome(order: int) -> str:
    """A file's outcome for the stage of `order`, as `FileSignature.outcome` decides it."""
    finished = " OR ".join(_FINISHED_SIGN[order:])
    skipped = "f.triageRoute = 'skip'" if order > 4 else "1 = 0"
    return (
        f"CASE WHEN {finished} THEN 'finished' "
        f"WHEN {skipped} THEN 'skipped' "
        f"WHEN f.terminalState = 'failed' AND {_FAILED_ORDER} <= {order} THEN 'failed' "
        "WHEN f.terminalState = 'cancelled' THEN 'cancelled' "
        "ELSE 'pending' END"
    )


def _progress_view() -> str:
    outcomes = " UNION ALL ".join(
        f"SELECT f.batchId AS batchId, '{stage}' AS stage, {_outcome(order)} AS outcome "
        "FROM fileDistribution f"
        for stage, order, _ in _STAGES
    )
    stages = " UNION ALL ".join(
        f"SELECT '{stage}' AS stage, {order} AS stageOrder" for stage, order, _ in _STAGES
    )
    status = (
        "CASE s.stage "
        + " ".join(f"WHEN '{stage}' THEN b.{column}" for stage, _, column in _STAGES)
        + " END"
    )

    def count(outcome: str) -> str:
        return f"SUM(CASE WHEN o.outcome = '{outcome}' THEN 1 ELSE 0 END)"

    return (
        "CREATE VIEW v_batch_stage_progress AS "
        "SELECT b.batchId AS batchId, s.stage AS stage, s.stageOrder AS stageOrder, "
        f"{status} AS stageStatus, b.status AS batchStatus, b.totalFiles AS totalFiles, "
        "COALESCE(c.knownFiles, 0) AS knownFiles, "
        "COALESCE(c.finishedFiles, 0) AS finishedFiles, "
        "COALESCE(c.skippedFiles, 0) AS skippedFiles, "
        "COALESCE(c.failedFiles, 0) AS failedFiles, "
        "COALESCE(c.cancelledFiles, 0) AS cancelledFiles, "
        "COALESCE(c.pendingFiles, 0) AS pendingFiles, "
        "CASE WHEN b.totalFiles > 0 THEN ROUND(100.0 * (COALESCE(c.finishedFiles, 0) "
        "+ COALESCE(c.skippedFiles, 0) + COALESCE(c.failedFiles, 0)) / b.totalFiles, 1) "
        "END AS percentDone "
        f"FROM batchStatus b CROSS JOIN ({stages}) s "
        "LEFT JOIN (SELECT o.batchId AS batchId, o.stage AS stage, COUNT(*) AS knownFiles, "
        f"{count('finished')} AS finishedFiles, {count('skipped')} AS skippedFiles, "
        f"{count('failed')} AS failedFiles, {count('cancelled')} AS cancelledFiles, "
        f"{count('pending')} AS pendingFiles "
        f"FROM ({outcomes}) o GROUP BY o.batchId, o.stage) c "
        "ON c.batchId = b.batchId AND c.stage = s.stage"
    )


def _minute(mysql: bool) -> str:
    """The minute in which an attempt ended (startedAt + durationMs)."""
    if mysql:
        ended = "p.startedAt + INTERVAL ROUND(COALESCE(p.durationMs, 0) * 1000) MICROSECOND"
        return f"CAST(DATE_FORMAT({ended}, '%Y-%m-%d %H:%i:00') AS DATETIME)"
    return (
        "strftime('%Y-%m-%d %H:%M:00', p.startedAt, "
        "printf('%+f seconds', COALESCE(p.durationMs, 0) / 1000.0))"
    )


def _rate(part: str, whole: str) -> str:
    return f"CASE WHEN {whole} > 0 THEN ROUND(1.0 * {part} / {whole}, 4) END"


FAILED_ATTEMPT = "CASE WHEN p.status = 'failure' THEN 1 ELSE 0 END"


def _view_statements(mysql: bool) -> list[str]:
    minute = _minute(mysql)
    return [
        _progress_view(),
        # A file finished a stage when its successful attempt ended.
        "CREATE VIEW v_stage_files_per_minute AS "
        f"SELECT p.batch_id AS batch_id, p.stage_name AS stage_name, {minute} AS minute, "
        "COUNT(*) AS files FROM processing_logs p WHERE p.status = 'success' "
        f"GROUP BY p.batch_id, p.stage_name, {minute}",
        "CREATE VIEW v_stage_error_rate AS "
        "SELECT a.batch_id AS batch_id, a.stage_name AS stage_name, a.attempts AS attempts, "
        "a.failedAttempts AS failedAttempts, "
        f"{_rate('a.failedAttempts', 'a.attempts')} AS attemptErrorRate, a.files AS files, "
        "COALESCE(x.failedFiles, 0) AS failedFiles, "
        f"{_rate('COALESCE(x.failedFiles, 0)', 'a.files')} AS fileErrorRate "
        "FROM (SELECT p.batch_id AS batch_id, p.stage_name AS stage_name, "
        f"COUNT(*) AS attempts, SUM({FAILED_ATTEMPT}) AS failedAttempts, "
        "COUNT(DISTINCT p.call_id) AS files FROM processing_logs p "
        "GROUP BY p.batch_id, p.stage_name) a "
        "LEFT JOIN (SELECT f.batchId AS batchId, f.failedStage AS failedStage, "
        "COUNT(*) AS failedFiles FROM fileDistribution f WHERE f.terminalState = 'failed' "
        "GROUP BY f.batchId, f.failedStage) x "
        "ON x.batchId = a.batch_id AND x.failedStage = a.stage_name",
        "CREATE VIEW v_host_error_rate AS "
        "SELECT p.batch_id AS batch_id, p.host AS host, p.stage_name AS stage_name, "
        f"COUNT(*) AS attempts, SUM({FAILED_ATTEMPT}) AS failedAttempts, "
        "SUM(CASE WHEN p.errorKind = 'transient' THEN 1 ELSE 0 END) AS transientErrors, "
        "SUM(CASE WHEN p.errorKind = 'permanent' THEN 1 ELSE 0 END) AS permanentErrors, "
        f"{_rate(f'SUM({FAILED_ATTEMPT})', 'COUNT(*)')} AS errorRate "
        "FROM processing_logs p GROUP BY p.batch_id, p.host, p.stage_name",
        "CREATE VIEW v_file_durations AS "
        "SELECT p.batch_id AS batch_id, p.call_id AS call_id, COUNT(*) AS attempts, "
        f"SUM({FAILED_ATTEMPT}) AS failedAttempts, "
        "COUNT(DISTINCT p.stage_name) AS stages, SUM(p.durationMs) AS totalMs, "
        "MAX(p.durationMs) AS slowestAttemptMs "
        "FROM processing_logs p GROUP BY p.batch_id, p.call_id",
    ]


def upgrade() -> None:
    with op.batch_alter_table("batchStatus") as batch:
        batch.add_column(
            sa.Column("cancelledFiles", sa.Integer, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("cancelledAt", Timestamp))
        batch.add_column(sa.Column("cancelReason", sa.Text))
    mysql = op.get_bind().dialect.name in ("mysql", "mariadb")
    for statement in _view_statements(mysql):
        op.execute(statement)


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("batchStatus") as batch:
        for name in ("cancelReason", "cancelledAt", "cancelledFiles"):
            batch.drop_column(name)
