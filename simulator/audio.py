"""Really open and decode the audio a request points at, as a real model server would.

The product must learn that a missing file is a 404 and a corrupt one a 422 (both permanent), so
the simulator cannot just trust the URI: it resolves it and decodes the whole WAV with `wave`.
"""

from __future__ import annotations

import json
import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

# Read in bounded chunks so a long call recording never sits in memory at once.
_CHUNK_FRAMES = 64 * 1024


class AudioError(Exception):
    """An audio problem with the HTTP status and message a model server would answer."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AudioNotFound(AudioError):
    status = 404


class AudioUndecodable(AudioError):
    status = 422


class BadAudioUri(AudioError):
    status = 400


@dataclass(frozen=True)
class AudioInfo:
    path: str
    frames: int
    rate: int
    channels: int
    sample_width: int
    # The call's length as the file declares it (shared.call_audio: synthetic calls are
    # time-compressed); None for an ordinary WAV, whose call is as long as its audio.
    declared_call_s: float | None = None

    @property
    def audio_s(self) -> float:
        return self.frames / self.rate

    @property
    def duration_s(self) -> float:
        """The call's length: what the model is "listening" to."""
        return self.audio_s if self.declared_call_s is None else self.declared_call_s


def uri_to_path(uri: str) -> Path:
    """`file:///abs/x.wav` (or `file://localhost/...`) or a plain path -> a filesystem path."""
    if "://" not in uri:
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise BadAudioUri(f"unsupported audio_uri scheme: {parsed.scheme!r}")
    if parsed.netloc not in ("", "localhost"):
        raise BadAudioUri(f"file URI names a remote host: {parsed.netloc!r}")
    return Path(unquote(parsed.path))


def read_wav(path: Path) -> AudioInfo:
    """Decode every frame of a WAV file; raise AudioNotFound / AudioUndecodable."""
    if not path.is_file():
        raise AudioNotFound(f"audio not found: {path}")
    try:
        with wave.open(str(path), "rb") as wav:
            frames = wav.getnframes()
            rate = wav.getframerate()
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            if rate <= 0:
                raise AudioUndecodable(f"undecodable audio: bad sample rate {rate}")
            if frames <= 0:
                raise AudioUndecodable("undecodable audio: no audio frames")
            # The header's frame count is a promise; a truncated file breaks it.
            read = 0
            while read < frames:
                chunk = wav.readframes(min(_CHUNK_FRAMES, frames - read))
                got = len(chunk) // (width * channels)
                if got == 0:
                    raise AudioUndecodable(
                        f"undecodable audio: truncated data ({read} of {frames} frames)"
                    )
                read += got
    except AudioError:
        raise
    except (wave.Error, EOFError, struct.error, ValueError) as exc:
        raise AudioUndecodable(f"undecodable audio: {exc or type(exc).__name__}") from exc
    except OSError as exc:
        raise AudioUndecodable(f"undecodable audio: unreadable file ({exc.strerror})") from exc
    return AudioInfo(str(path), frames, rate, channels, width, _declared_call_s(path))


# The call-length convention of cofi's synthetic audio, as stated in shared/call_audio.py:
# a RIFF chunk `cofi` before `data` whose JSON payload declares `call_seconds`. The simulator
# stands in for an external model server, so it implements the stated format itself instead
# of importing the product's reader (tests/unit/test_call_audio.py checks both agree).
_CALL_CHUNK = b"cofi"
_HEADER_BYTES = 4096


def declared_call_seconds(head: bytes) -> float | None:
    """The `cofi` chunk's call length in a WAV header, or None when there is none."""
    pos = 12  # after RIFF, size, WAVE
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        if chunk_id == b"data":
            return None
        if chunk_id == _CALL_CHUNK:
            try:
                value = json.loads(head[pos + 8 : pos + 8 + size])["call_seconds"]
            except (ValueError, KeyError, TypeError) as exc:
                raise AudioUndecodable(f"undecodable audio: bad cofi chunk: {exc}") from exc
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise AudioUndecodable(f"undecodable audio: bad cofi chunk: {value!r}")
            return float(value)
        pos += 8 + size + (size % 2)
    return None


def _declared_call_s(path: Path) -> float | None:
    try:
        with path.open("rb") as f:
            return declared_call_seconds(f.read(_HEADER_BYTES))
    except OSError as exc:
        raise AudioUndecodable(f"undecodable audio: unreadable file ({exc.strerror})") from exc


def load_audio(uri: str) -> AudioInfo:
    return read_wav(uri_to_path(uri))
