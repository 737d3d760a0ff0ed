"""The tracker's knobs, read from the environment (nothing is read at import time)."""

from pydantic import Field

from shared.database_settings import DatabaseSettings
from shared.groups import tracker_group
from shared.redaction import RedactionSettings
from shared.settings import CommonSettings


class TrackerSettings(RedactionSettings, DatabaseSettings, CommonSettings):
    progress_update_interval: int = Field(default=100, ge=1)
    log_file_start_events: bool = False
    tracker_max_batch: int = Field(default=2000, ge=1)
    # A busy pipeline's events arrive in fewer, fuller fetches (each lists every partition of
    # every topic it reads, decoded in Python); the tables lag by at most the wait. Topics
    # then lag each other more, which the tables allow for: a file ends only when every event
    # of its route is applied (file_events.py).
    tracker_fetch_min_bytes: int = Field(
        default=1_048_576,
        ge=1,
        description="A fetch waits for this many bytes of events (about 1,300) or "
        "TRACKER_FETCH_MAX_WAIT_MS, whichever comes first",
    )
    tracker_fetch_max_wait_ms: int = Field(
        default=500,
        ge=0,
        le=5_000,
        description="Longest a fetch waits for TRACKER_FETCH_MIN_BYTES: how far the tables "
        "may lag a quiet pipeline",
    )
    group_lag_refresh_s: float = Field(
        default=60.0,
        gt=0,
        description="How often the stage groups' lag is read from the broker (one request "
        "per group: GPU hosts x GPU stages + 3)",
    )
    # Empty means "<topic_prefix>-tracker"; a second tracker over the same topics sets its own.
    tracker_group_id: str = ""
    # Apply the Alembic migrations before consuming (one tracker per deployment should).
    tracker_migrate: bool = True
    # How long startup waits for the database to answer before giving up.
    database_wait_s: float = Field(default=120.0, ge=0)
    # Test hook (services/tracker/kill_switch.py): SIGKILL after the N-th poll's database
    # commit, before its offset commit. 0 disables it.
    tracker_kill_after_polls: int = Field(default=0, ge=0)

    payload_retention_days: float = Field(
        default=0,
        ge=0,
        description="Keep call content (processing_logs payloads, dead letters' raw bytes) "
        "this many days, then the tracker empties it; 0 keeps it forever",
    )
    batch_retention_days: float = Field(
        default=0,
        ge=0,
        description="Delete every row of a batch this many days after it ended (Complete or "
        "Cancelled; open batches stay); 0 keeps them forever. Keep the topics' retention "
        "shorter, or a rebuild brings the batches back",
    )
    payload_purge_interval_s: float = Field(
        default=3600, gt=0, description="How often the tracker purges content past retention"
    )

    @property
    def group_id(self) -> str:
        return self.tracker_group_id or tracker_group(self.topics)
