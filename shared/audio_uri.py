"""Which `audio_uri`s may reach a GPU host (pure functions, and the settings that say).

A GPU host fetches whatever URI a file names, so an event naming `http://169.254.169.254/…`
or `file:///etc/shadow` would make the fleet read it. Anyone who can write the uploads topic
can write a `FileReassigned` too, and a model answer names the `denoised_uri`, so the check is
made where a URI enters and where it is used: the distributor checks every upload and every
hand-back, and each GPU stage checks the URI it is about to send (the `audio_uri`, or the
`denoised_uri` after denoise), against the allowed schemes and roots of the settings
(`AUDIO_URI_ALLOWED_SCHEMES`, `AUDIO_URI_ALLOWED_ROOTS`); anything else fails at once, with
the reason, on `cofi.failed`.

Roots are absolute paths (for `file:` URIs) or URL prefixes (`s3://bucket/calls/`,
`https://audio.example.com/calls/`) for other schemes. A URI with a `..` segment, control
characters, a query or a fragment (for `file:`), or a `file:` host other than `localhost` is
refused whatever the roots say.
"""

import posixpath
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

_FORBIDDEN = set(string.whitespace) | {chr(c) for c in range(32)} | {"\x7f"}


@dataclass(frozen=True)
class AudioUriPolicy:
    """Allowed schemes (lower case) and roots; the defaults admit any local absolute path."""

    schemes: frozenset[str] = frozenset({"file"})
    roots: tuple[str, ...] = ("/",)

    @classmethod
    def of(cls, schemes: Iterable[str], roots: Iterable[str]) -> "AudioUriPolicy":
        return cls(frozenset(s.lower() for s in schemes), tuple(roots))


def check_root(root: str) -> str:
    """A root as the settings accept it: an absolute path or a `scheme://…` prefix."""
    if "://" in root:
        parts = urlsplit(root)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"audio URI root {root!r}: a URL root needs a scheme and a host")
        if ".." in parts.path.split("/"):
            raise ValueError(f"audio URI root {root!r} has a '..' segment")
        return root
    if not root.startswith("/"):
        raise ValueError(f"audio URI root {root!r} must be an absolute path or a URL prefix")
    if ".." in root.split("/"):
        raise ValueError(f"audio URI root {root!r} has a '..' segment")
    return posixpath.normpath(root)


def audio_uri_problem(uri: str, policy: AudioUriPolicy) -> str | None:
    """Why `uri` may not go to a GPU host, or None when it may."""
    if any(ch in _FORBIDDEN for ch in uri):
        return "audio_uri contains whitespace or control characters"
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        return f"audio_uri does not parse: {exc}"
    scheme = parts.scheme.lower()
    if not scheme:
        return "audio_uri has no scheme (expected e.g. file:///data/audio/call.wav)"
    if scheme not in policy.schemes:
        allowed = ", ".join(sorted(policy.schemes)) or "none"
        return f"audio_uri scheme {scheme!r} is not allowed (AUDIO_URI_ALLOWED_SCHEMES: {allowed})"
    path = unquote(parts.path)
    if ".." in path.split("/"):
        return "audio_uri has a '..' path segment"
    if scheme == "file":
        return _file_problem(parts.netloc, path, parts.query or parts.fragment, policy.roots)
    return _url_problem(uri, scheme, policy.roots)


def _file_problem(netloc: str, path: str, extra: str, roots: tuple[str, ...]) -> str | None:
    if netloc not in ("", "localhost"):
        return f"audio_uri names a remote file host {netloc!r}"
    if extra:
        return "a file: audio_uri may not have a query or a fragment"
    if not path.startswith("/"):
        return "audio_uri is not an absolute file path"
    normal = posixpath.normpath(path)
    for root in roots:
        if "://" in root:
            continue
        if root == "/" or normal == root or normal.startswith(root.rstrip("/") + "/"):
            return None
    return f"audio_uri path {normal!r} is outside AUDIO_URI_ALLOWED_ROOTS"


def _url_problem(uri: str, scheme: str, roots: tuple[str, ...]) -> str | None:
    prefixes = [
        r if r.endswith("/") else r + "/" for r in roots if r.lower().startswith(scheme + "://")
    ]
    if not prefixes:
        return f"no AUDIO_URI_ALLOWED_ROOTS entry for scheme {scheme!r}"
    if any(uri.startswith(prefix) for prefix in prefixes):
        return None
    return "audio_uri is outside AUDIO_URI_ALLOWED_ROOTS"


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class AudioUriSettings(BaseModel):
    """The allowlist's two settings, read by the distributor and the GPU stages alike."""

    audio_uri_allowed_schemes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["file"],
        description="URI schemes an upload's `audio_uri` may use, comma-separated "
        "(e.g. `file,s3`); any other fails the file at distribution (and at a GPU stage, for "
        "a hand-back or a `denoised_uri`), before a GPU host sees it",
    )
    audio_uri_allowed_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/"],
        description="Where audio may live, comma-separated: absolute paths for `file:` URIs "
        "(e.g. `/data/audio`), URL prefixes for other schemes (e.g. `s3://calls/`); narrow "
        "`/` to the upload system's folders in production, and include the folder where "
        "denoise writes",
    )

    _split = field_validator("audio_uri_allowed_schemes", "audio_uri_allowed_roots", mode="before")(
        _comma_list
    )

    @field_validator("audio_uri_allowed_schemes")
    @classmethod
    def _schemes(cls, schemes: list[str]) -> list[str]:
        if not schemes:
            raise ValueError("AUDIO_URI_ALLOWED_SCHEMES must name at least one scheme")
        return [s.lower() for s in schemes]

    @field_validator("audio_uri_allowed_roots")
    @classmethod
    def _roots(cls, roots: list[str]) -> list[str]:
        if not roots:
            raise ValueError("AUDIO_URI_ALLOWED_ROOTS must name at least one root")
        return [check_root(r) for r in roots]

    @property
    def audio_uri_policy(self) -> AudioUriPolicy:
        return AudioUriPolicy.of(self.audio_uri_allowed_schemes, self.audio_uri_allowed_roots)
