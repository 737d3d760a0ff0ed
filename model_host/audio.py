"""Read the audio a request names, and write the denoised audio (WAV, PCM)."""

import hashlib
import os
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly

Samples = npt.NDArray[np.float32]
MODEL_RATE = 16000  # what Whisper and Silero VAD read


class AudioProblem(Exception):
    """An audio problem with the status the contract gives it."""

    status = 500


class AudioMissing(AudioProblem):
    status = 404


class AudioUndecodable(AudioProblem):
    status = 422


class AudioUriRefused(AudioProblem):
    status = 400


@dataclass(frozen=True)
class Audio:
    samples: Samples  # mono, -1..1
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate

    def head(self, seconds: float) -> "Audio":
        return Audio(self.samples[: int(seconds * self.rate)], self.rate)

    def at(self, rate: int) -> Samples:
        if rate == self.rate:
            return self.samples
        g = np.gcd(rate, self.rate)
        return np.asarray(resample_poly(self.samples, rate // g, self.rate // g), np.float32)


def uri_path(uri: str) -> Path:
    """`file:///abs/x.wav` or an absolute path; other schemes are not served by this host."""
    if "://" not in uri:
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise AudioUriRefused(f"this host reads local file: URIs only, not {uri!r}")
    return Path(unquote(parsed.path))


_WIDTHS = {1: np.uint8, 2: np.int16, 4: np.int32}


def read_audio(uri: str) -> Audio:
    path = uri_path(uri)
    if not path.is_file():
        raise AudioMissing(f"audio not found: {path}")
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.getnframes()
            raw = wav.readframes(frames)
    except (wave.Error, EOFError, ValueError) as exc:
        raise AudioUndecodable(f"undecodable audio {path}: {exc or type(exc).__name__}") from exc
    except OSError as exc:
        raise AudioUndecodable(f"unreadable audio {path}: {exc.strerror}") from exc
    if width not in _WIDTHS or rate <= 0 or channels <= 0:
        raise AudioUndecodable(f"unsupported audio {path}: {width * 8}-bit, {rate} Hz")
    got = len(raw) // (width * channels)
    if frames <= 0 or got == 0:
        raise AudioUndecodable(f"undecodable audio {path}: no audio frames")
    if got < frames:
        raise AudioUndecodable(f"undecodable audio {path}: truncated ({got} of {frames} frames)")
    ints = np.frombuffer(raw[: got * width * channels], _WIDTHS[width]).astype(np.float32)
    if width == 1:
        ints -= 128.0
    scale = float(2 ** (8 * width - 1))
    mono = ints.reshape(-1, channels).mean(axis=1) / scale
    return Audio(np.asarray(mono, np.float32), rate)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def output_path(root: Path, batch_id: str, file_name: str) -> Path:
    """The same (batch, file) always lands on the same path: a retried request overwrites it."""
    digest = hashlib.sha256(f"{batch_id}\0{file_name}".encode()).hexdigest()[:10]
    stem = _UNSAFE.sub("_", Path(file_name).stem)[:80] or "audio"
    return root / _UNSAFE.sub("_", batch_id) / f"{stem}-{digest}.wav"


def write_wav(path: Path, audio: Audio) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(audio.samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    # Written aside then renamed: a reader never sees half a file, a retry replaces it whole.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(audio.rate)
        wav.writeframes(pcm)
    tmp.replace(path)
