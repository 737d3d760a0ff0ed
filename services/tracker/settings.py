"""The tracker's knobs, read from the environment (nothing is read at import time)."""

from pydantic import Field, SecretStr

from shared.settings import EMBEDDED_DATABASE_URL, CommonSettings, url_with_password


class TrackerSettings(CommonSettings):
    database_url: str | None = None
    database_password: SecretStr = Field(
        default=SecretStr(""),
        description="Password of DATABASE_URL's user, put into the URL (from a file: "
        "`DATABASE_PASSWORD_FILE`); empty: the URL's own",
    )
    progress_update_interval: int = Field(default=100, ge=1)
    log_file_start_events: bool = False
    tracker_max_batch: int = Field(default=2000, ge=1)
    # Empty means "<topic_prefix>-tracker"; a second tracker over the same topics sets its own.
    tracker_group_id: str = ""
    # Apply the Alembic migrations before consuming (one tracker per deployment should).
    tracker_migrate: bool = True
    # How long startup waits for the database to answer before giving up.
    database_wait_s: float = Field(default=120.0, ge=0)
    # Test hook (services/tracker/kill_switch.py): SIGKILL after the N-th poll's database
    # commit, before its offset commit. 0 disables it.
    tracker_kill_after_polls: int = Field(default=0, ge=0)

    @property
    def resolved_database_url(self) -> str:
        return url_with_password(self.database_url or EMBEDDED_DATABASE_URL, self.database_password)

    @property
    def group_id(self) -> str:
        return self.tracker_group_id or f"{self.topic_prefix}-tracker"
