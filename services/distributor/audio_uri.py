"""Which `audio_uri`s the distributor lets through to the GPU hosts (pure functions).

A GPU host fetches whatever URI a file names, so an upload naming `http://169.254.169.254/…`
or `file:///etc/shadow` would make the fleet read it. The distributor checks every upload
against the allowed schemes and roots of its settings (`AUDIO_URI_ALLOWED_SCHEMES`,
`AUDIO_URI_ALLOWED_ROOTS`); anything else fails at once, with the reason, on `cofi.failed`.

Roots are absolute paths (for `file:` URIs) or URL prefixes (`s3://bucket/calls/`,
`https://audio.example.com/calls/`) for other schemes. A URI with a `..` segment, control
characters, a query or a fragment (for `file:`), or a `file:` host other than `localhost` is
refused whatever the roots say.
"""

import posixpath
import string
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

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
