"""The progress page's knobs, read from the environment (nothing is read at import time)."""

from typing import Self

from pydantic import Field, SecretStr, model_validator

from shared.database_settings import DatabaseSettings
from shared.redaction import RedactionSettings
from shared.settings import CommonSettings, url_with_password


class WebSettings(RedactionSettings, DatabaseSettings, CommonSettings):
    web_database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL the page reads with: a user with SELECT only (e.g. "
        "`cofi_ro`, docs/operations.md); unset: `DATABASE_URL` (its sessions are still "
        "read-only)",
    )
    web_database_password: SecretStr = Field(
        default=SecretStr(""),
        description="Password of `WEB_DATABASE_URL`'s user, put into the URL (from a file: "
        "`WEB_DATABASE_PASSWORD_FILE`); empty: the URL's own",
    )
    web_host: str = Field(default="127.0.0.1", description="Address the progress page binds")
    web_port: int = Field(default=8080, ge=1, le=65535, description="Port of the progress page")
    web_refresh_s: int = Field(
        default=5, ge=0, description="Seconds between the page's reloads; 0 turns it off"
    )
    web_batches: int = Field(default=20, ge=1, description="Recent batches the front page lists")
    web_auth_user: SecretStr = Field(
        default=SecretStr(""),
        description="With `WEB_AUTH_PASSWORD`: the page asks for this user (HTTP basic auth); "
        "unset: no authentication",
    )
    web_auth_password: SecretStr = Field(
        default=SecretStr(""), description="The password of `WEB_AUTH_USER`"
    )

    @model_validator(mode="after")
    def _auth_complete(self) -> Self:
        if bool(self.web_auth_user.get_secret_value()) != bool(
            self.web_auth_password.get_secret_value()
        ):
            raise ValueError("WEB_AUTH_USER and WEB_AUTH_PASSWORD are set together or not at all")
        return self

    @property
    def read_database_url(self) -> str:
        """The URL the page reads with: its own read-only user, else the tracker's database."""
        if self.web_database_url is not None and self.web_database_url.get_secret_value():
            return url_with_password(
                self.web_database_url.get_secret_value(), self.web_database_password
            )
        return self.resolved_database_url

    @property
    def auth(self) -> tuple[str, str] | None:
        """(user, password) when the page requires HTTP basic auth."""
        user = self.web_auth_user.get_secret_value()
        return (user, self.web_auth_password.get_secret_value()) if user else None
