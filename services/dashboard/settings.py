"""The progress page's knobs, read from the environment (nothing is read at import time)."""

from pydantic import Field, SecretStr

from shared.settings import EMBEDDED_DATABASE_URL, CommonSettings, url_with_password


class WebSettings(CommonSettings):
    # The tracker's database; unset, the tracker's embedded SQLite file.
    database_url: str | None = None
    database_password: SecretStr = Field(
        default=SecretStr(""),
        description="Password of DATABASE_URL's user, put into the URL (from a file: "
        "`DATABASE_PASSWORD_FILE`); empty: the URL's own",
    )
    web_host: str = Field(default="127.0.0.1", description="Address the progress page binds")
    web_port: int = Field(default=8080, ge=1, le=65535, description="Port of the progress page")
    web_refresh_s: int = Field(
        default=5, ge=0, description="Seconds between the page's reloads; 0 turns it off"
    )
    web_batches: int = Field(default=20, ge=1, description="Recent batches the front page lists")

    @property
    def resolved_database_url(self) -> str:
        return url_with_password(self.database_url or EMBEDDED_DATABASE_URL, self.database_password)
