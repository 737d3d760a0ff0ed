"""The dashboard tables as they stand after the last migration (SQLAlchemy Core).

The seed's table and column names are a contract with the dashboards: columns are only ever
added. The migrations under `migrations/` build this schema; a test checks they agree.
"""

from sqlalchemy import (
    CHAR,
    BigInteger,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

from shared import pipeline
from shared.status import Status

_MYSQL = ("mysql", "mariadb")

# Event times keep their microseconds so a replay writes the very same values.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), *_MYSQL)
# The seed's done flags are TINYINT(1) holding 0 or 1.
Flag = Integer().with_variant(mysql.TINYINT(display_width=1), *_MYSQL)
# Model requests and responses (transcripts, LLM output) outgrow TEXT (65,535 bytes).
LongText = Text().with_variant(mysql.LONGTEXT(), *_MYSQL)
Key = CHAR(64)  # sha256 hex

# One done flag (fileDistribution) and one status column (batchStatus) per stage, from the
# pipeline's table; a new stage's columns come with a migration of their own.
FLAG_COLUMNS = pipeline.FLAG_COLUMNS
STATUS_COLUMNS = pipeline.STATUS_COLUMNS

metadata = MetaData()

file_distribution = Table(
    "fileDistribution",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("file", Text, nullable=False),
    # In the seed's column order: denoiseDone first, the other flags after batchId.
    Column("denoiseDone", Flag, server_default="0"),
    Column("ip", String(255)),
    Column("batchId", String(64), nullable=False),
    *(Column(name, Flag, server_default="0") for name in FLAG_COLUMNS if name != "denoiseDone"),
    # Added by cofi: file names may be 1,000 characters, too long for a unique key.
    Column("fileKey", Key, nullable=False),
    Column("audioUri", Text),
    Column("terminalState", String(16)),  # NULL until done / skipped / failed / cancelled
    Column("failedStage", String(16)),
    Column("failedError", Text),
    Column("failedAt", Timestamp),
    Column("triageRoute", String(8)),
    Column("triageRule", String(255)),
    Column("triageReason", Text),
    Column("createdAt", Timestamp),
    Column("updatedAt", Timestamp),
    Column("finishedAt", Timestamp),
    # Added by 0005: per stage, when and how the file first got through it (resolutions.py).
    Column("stageResolutions", Text),
    # Added by 0006: which assignment `ip` is (0 the distributor's first; failovers count up).
    Column("assignment", Integer, nullable=False, server_default="0"),
    # Added by 0007: which triage decided (the latest by assignment, then attempt), and the
    # file's events applied so far (file_events.py): its end waits for every one of its route.
    Column("triageAssignment", Integer),
    Column("triageAttempt", Integer),
    Column("appliedEvents", Text),
    UniqueConstraint("batchId", "fileKey", name="uq_fileDistribution_batch_file"),
)

batch_status = Table(
    "batchStatus",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batchId", String(64), nullable=False),
    *(Column(name, String(50), server_default=Status.PENDING.value) for name in STATUS_COLUMNS),
    Column("status", String(50), server_default=Status.PENDING.value),
    # Added by cofi.
    Column("totalFiles", Integer),  # from BatchClosed; NULL while the batch is open
    Column("knownFiles", Integer, nullable=False, server_default="0"),
    Column("doneFiles", Integer, nullable=False, server_default="0"),
    Column("skippedFiles", Integer, nullable=False, server_default="0"),
    Column("failedFiles", Integer, nullable=False, server_default="0"),
    Column("createdAt", Timestamp),
    Column("updatedAt", Timestamp),
    Column("closedAt", Timestamp),
    Column("completedAt", Timestamp),
    # Added by 0004: a cancelled batch (BatchCancelled on the control topic).
    Column("cancelledFiles", Integer, nullable=False, server_default="0"),
    Column("cancelledAt", Timestamp),
    Column("cancelReason", Text),
    # Added by 0005: the batch's files counted per signature (batch_status.py encode_counts).
    Column("fileCounts", Text),
    # Added by 0010: the XOR of its files' resolution hashes (resolution_index.py).
    Column("resolutionsDigest", BigInteger),
    UniqueConstraint("batchId", name="uq_batchStatus_batchId"),
)

processing_logs = Table(
    "processing_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("call_id", Text),
    Column("batch_id", String(64)),
    Column("stage_name", String(50)),
    Column("status", String(20)),
    Column("error_message", Text),
    Column("input_payload", LongText),
    Column("output_payload", LongText),
    # Added by cofi: sha256 of (batch, file, stage, attempt number): a redelivery is a no-op.
    Column("attemptKey", Key),
    Column("attempt", Integer),
    Column("host", String(255)),
    Column("errorKind", String(16)),
    Column("startedAt", Timestamp),
    Column("durationMs", Double),
    UniqueConstraint("attemptKey", name="uq_processing_logs_attemptKey"),
    Index("ix_processing_logs_batch_stage", "batch_id", "stage_name"),
)

batch_execution_log = Table(
    "batchExecutionLog",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batchId", String(64)),
    Column("stage", String(50)),
    Column("eventType", String(50)),
    Column("fileName", Text),
    Column("status", Text),
    Column("totalFiles", Integer),
    Column("processedFiles", Integer),
    # Added by cofi: sha256 of the milestone's identity, so a replay inserts nothing.
    Column("eventKey", Key),
    Column("failedFiles", Integer),
    Column("skippedFiles", Integer),
    Column("createdAt", Timestamp),
    UniqueConstraint("eventKey", name="uq_batchExecutionLog_eventKey"),
    Index("ix_batchExecutionLog_batch_stage", "batchId", "stage", "eventType"),
)

# Added by cofi: poison messages (undecodable records), one row per source record.
dead_letters = Table(
    "deadLetters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("letterKey", Key, nullable=False),  # sha256 of (source topic, partition, offset)
    Column("sourceTopic", String(255), nullable=False),
    Column("sourcePartition", Integer, nullable=False),
    Column("sourceOffset", BigInteger, nullable=False),
    Column("stage", String(32)),
    Column("consumer", String(255)),
    Column("error", Text),
    Column("batchId", String(64)),  # best effort: read from the raw bytes if they are JSON
    Column("fileName", Text),
    Column("keyB64", LongText),  # LONGTEXT since 0008: a key of any size, whole
    Column("valueB64", LongText),
    Column("createdAt", Timestamp),
    # Since 0009: when `cofi retry` replayed the letter (its `DeadLetterReplayed` event).
    Column("replayedAt", Timestamp),
    UniqueConstraint("letterKey", name="uq_deadLetters_letterKey"),
    Index("ix_deadLetters_batchId", "batchId"),
)
