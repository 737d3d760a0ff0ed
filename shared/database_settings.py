"""`DATABASE_URL`, declared once: the tracker (its writer), the progress page and `cofi` (status,
retry, cancel, migrate, demo) all read the tracker's database through `DatabaseSettings`, with
one default."""

from pydantic import Field, SecretStr

from shared.settings import EMBEDDED_DATABASE_URL, FileAwareSettings, url_with_password

__all__ = ["EMBEDDED_DATABASE_URL", "DatabaseSettings"]


class DatabaseSettings(FileAwareSettings):
    """A mixin beside `CommonSettings`: `TrackerSettings(DatabaseSettings, CommonSettings)`."""

    database_url: str | None = None
    database_password: SecretStr = Field(
        default=SecretStr(""),
        description="Password of DATABASE_URL's user, put into the URL (from a file: "
        "`DATABASE_PASSWORD_FILE`); empty: the URL's own",
    )

    @property
    def resolved_database_url(self) -> str:
        return url_with_password(self.database_url or EMBEDDED_DATABASE_URL, self.database_password)
