"""How long a call is, read from its WAV file: the one convention of generator, simulator and
distributor.

Real call audio is heavy-tailed (a few minutes typically, up to an hour), and 10,000 such calls
at telephony quality would take gigabytes. So a synthetic call's WAV is *time-compressed*: it
holds `call_seconds / TIME_COMPRESSION` seconds of 8 kHz mono 16-bit PCM and declares the
call's real length in a small RIFF chunk (id `cofi`, a JSON payload
`{"call_seconds": ..., "time_compression": ...}`) placed between `fmt ` and `data`. WAV readers
skip chunks they do not know (Python's `wave` does), so the file stays an ordinary WAV.

A WAV without that chunk (a real recording) is as long as its audio. Everything that needs a
call's length (the simulator's model time, the upload event's `duration_s`, the distributor's
balancing) calls `call_seconds_of` / `parse_call_header` from here and nothing else.
"""

import json
import struct
from dataclasses import dataclass
from pathlib import Path

RATE = 8_000  # telephony: 8 kHz
SAMPLE_WIDTH = 2  # 16-bit
CHANNELS = 1
# Seconds of call per second of stored audio in synthetic files: a one-hour call is a
# 15-second, 240 KB WAV; a median (3.5-minute) call 0.875 s, 14 KB; 10,000 calls of the default
# lengths (cli.audio) about 230 MB.
TIME_COMPRESSION = 240.0
CALL_CHUNK_ID = b"cofi"
# Enough bytes to hold RIFF, fmt and our chunk in any file we write (and most real headers).
HEADER_BYTES = 4096


class CallHeaderError(ValueError):
    """The bytes are not a WAV header this module can read."""


class BadCallChunk(CallHeaderError):
    """The file has a `cofi` chunk, but it does not declare a call length."""


@dataclass(frozen=True)
class CallHeader:
    rate: int
    channels: int
    sample_width: int
    frames: int  # from the data chunk's declared size
    declared_call_s: float | None  # the `cofi` chunk's call length, if any

    @property
    def audio_s(self) -> float:
        return self.frames / self.rate

    @property
    def call_s(self) -> float:
        """The call's length: what the file declares, else the audio's own length."""
        return self.audio_s if self.declared_call_s is None else self.declared_call_s


def call_chunk(call_seconds: float, compression: float) -> bytes:
    payload = json.dumps(
        {"call_seconds": round(call_seconds, 3), "time_compression": compression},
        separators=(",", ":"),
    ).encode()
    if len(payload) % 2:
        payload += b" "  # RIFF chunks are word-aligned
    return CALL_CHUNK_ID + struct.pack("<I", len(payload)) + payload


def wav_bytes(pcm: bytes, call_seconds: float | None, compression: float) -> bytes:
    """A complete 8 kHz mono 16-bit WAV of `pcm`, declaring `call_seconds` when given."""
    fmt = struct.pack(
        "<HHIIHH",
        1,  # PCM
        CHANNELS,
        RATE,
        RATE * CHANNELS * SAMPLE_WIDTH,
        CHANNELS * SAMPLE_WIDTH,
        8 * SAMPLE_WIDTH,
    )
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if call_seconds is not None:
        chunks += call_chunk(call_seconds, compression)
    chunks += b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def parse_call_header(head: bytes) -> CallHeader:
    """Read a WAV's header (its first bytes, up to the data chunk) without decoding audio."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise CallHeaderError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int] | None = None
    declared: float | None = None
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        body = pos + 8
        if chunk_id == b"data":
            if fmt is None:
                raise CallHeaderError("data chunk before fmt chunk")
            rate, channels, width = fmt
            return CallHeader(rate, channels, width, size // (channels * width), declared)
        if body + size > len(head):
            raise CallHeaderError(f"chunk {chunk_id!r} runs past the header")
        if chunk_id == b"fmt ":
            if size < 16:
                raise CallHeaderError("short fmt chunk")
            _tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from(
                "<HHIIHH", head, body
            )
            if rate <= 0 or channels <= 0 or bits <= 0:
                raise CallHeaderError("bad fmt chunk")
            fmt = (rate, channels, max(1, bits // 8))
        elif chunk_id == CALL_CHUNK_ID:
            declared = _declared_seconds(head[body : body + size])
        pos = body + size + (size % 2)
    raise CallHeaderError("no data chunk in the header")


def _declared_seconds(payload: bytes) -> float:
    try:
        value = json.loads(payload)["call_seconds"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadCallChunk(f"bad cofi chunk: {exc}") from exc
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BadCallChunk(f"bad cofi chunk: call_seconds {value!r}")
    return float(value)


def read_call_header(path: Path) -> CallHeader:
    """The header of the WAV at `path` (reads at most HEADER_BYTES)."""
    with path.open("rb") as f:
        return parse_call_header(f.read(HEADER_BYTES))


def call_seconds_of(path: Path) -> float:
    return read_call_header(path).call_s
