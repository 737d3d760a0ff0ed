"""Really open and decode the audio a request points at, as a real model server would.

The product must learn that a missing file is a 404 and a corrupt one a 422 (both permanent), so
the simulator cannot just trust the URI: it resolves it and decodes the whole WAV with `wave`.
"""

from __future__ import annotations

import struct
import wave
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from shared.call_audio import HEADER_BYTES, BadCallChunk, CallHeaderError, parse_call_header

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


def _declared_call_s(path: Path) -> float | None:
    try:
        with path.open("rb") as f:
            return parse_call_header(f.read(HEADER_BYTES)).declared_call_s
    except BadCallChunk as exc:
        raise AudioUndecodable(f"undecodable audio: {exc}") from exc
    except CallHeaderError:
        # `wave` decoded it; a header we cannot follow (e.g. huge chunks before data) simply
        # declares nothing. A malformed cofi chunk is reported as undecodable instead.
        return None
    except OSError as exc:
        raise AudioUndecodable(f"undecodable audio: unreadable file ({exc.strerror})") from exc


def load_audio(uri: str) -> AudioInfo:
    return read_wav(uri_to_path(uri))
