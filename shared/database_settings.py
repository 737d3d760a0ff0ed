"""`DATABASE_URL`, declared once: the tracker (its writer), the progress page and `cofi` (status,
retry, cancel, migrate, demo) all read the tracker's database through `DatabaseSettings`, with
one default."""

from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import EMBEDDED_DATABASE_URL

__all__ = ["EMBEDDED_DATABASE_URL", "DatabaseSettings"]


class DatabaseSettings(BaseSettings):
    """A mixin beside `CommonSettings`: `TrackerSettings(DatabaseSettings, CommonSettings)`."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    database_url: str | None = None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or EMBEDDED_DATABASE_URL
