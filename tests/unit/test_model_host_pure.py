"""The reference host's pure parts: DTMF decoding, the IVR decision, WAV reading, output paths."""

import wave
from pathlib import Path

import numpy as np
import pytest

from model_host import dtmf
from model_host.audio import AudioMissing, AudioUndecodable, output_path, read_audio
from model_host.ivr import IvrEvidence, decide, matched_phrases, normalize
from real_calls.wer import corpus_wer, word_error_rate

pytestmark = pytest.mark.unit


def _tone(key: str, seconds: float = 0.12) -> np.ndarray:
    for row, keys in enumerate(dtmf.KEYS):
        if key in keys:
            low, high = dtmf.LOW[row], dtmf.HIGH[keys.index(key)]
    t = np.arange(int(seconds * dtmf.RATE)) / dtmf.RATE
    return (0.25 * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))).astype(np.float32)


def test_dtmf_keys_are_decoded_in_noise_in_order() -> None:
    gap = np.zeros(800, np.float32)
    signal = np.concatenate([p for k in "1590#*" for p in (_tone(k), gap)])
    noise = 0.02 * np.random.default_rng(1).standard_normal(len(signal)).astype(np.float32)
    assert dtmf.decode(signal + noise) == "1590#*"


def test_noise_and_a_voice_like_harmonic_sound_are_not_keys() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(2 * dtmf.RATE) / dtmf.RATE
    # A 140 Hz voice with its harmonics, gliding: energy spread over many frequencies.
    pitch = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / dtmf.RATE
    harmonics = sum((np.sin(h * phase) / h for h in range(2, 20)), start=np.sin(phase))
    voiced = harmonics.astype(np.float32)
    assert dtmf.decode(0.2 * voiced) == ""
    assert dtmf.decode(0.1 * rng.standard_normal(dtmf.RATE).astype(np.float32)) == ""


def test_menu_phrases_match_without_case_accents_or_number_words() -> None:
    assert normalize("Para Español, oprima DOS!") == "para espanol oprima dos"
    found = matched_phrases("For billing press one. Main menu.", ("press 1", "main menu", "hold"))
    assert found == ["press 1", "main menu"]
    assert matched_phrases("I pressed 1 twice", ("press 1",)) == []


def test_ivr_needs_a_phrase_or_keys_with_little_speech() -> None:
    phrase = IvrEvidence(dtmf="", speech_s=15, window_s=20, phrases=["main menu"])
    keys_quiet = IvrEvidence(dtmf="44", speech_s=4, window_s=20, phrases=[])
    keys_talk = IvrEvidence(dtmf="4", speech_s=16, window_s=20, phrases=[])
    talk = IvrEvidence(dtmf="", speech_s=16, window_s=20, phrases=[])
    assert decide(phrase)[0] and decide(keys_quiet)[0]
    assert not decide(keys_talk)[0] and not decide(talk)[0]
    assert decide(talk)[1] == []


def _wav(path: Path, samples: np.ndarray, rate: int = 8000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def test_wav_is_read_as_mono_and_resampled(tmp_path: Path) -> None:
    stereo = np.tile(np.linspace(-0.5, 0.5, 8000, dtype=np.float32), (2, 1)).T.reshape(-1)
    audio = read_audio(_wav(tmp_path / "a.wav", stereo, channels=2).as_uri())
    assert audio.rate == 8000 and len(audio.samples) == 8000
    assert len(audio.at(16000)) == 16000
    assert audio.head(0.5).seconds == pytest.approx(0.5)


def test_missing_and_undecodable_audio_have_the_contract_statuses(tmp_path: Path) -> None:
    with pytest.raises(AudioMissing) as missing:
        read_audio((tmp_path / "none.wav").as_uri())
    assert missing.value.status == 404
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(AudioUndecodable) as bad:
        read_audio(str(tmp_path / "bad.wav"))
    assert bad.value.status == 422


def test_output_path_is_stable_per_file_and_apart_per_batch(tmp_path: Path) -> None:
    first = output_path(tmp_path, "b-1", "calls/x y.wav")
    assert first == output_path(tmp_path, "b-1", "calls/x y.wav")
    assert first != output_path(tmp_path, "b-2", "calls/x y.wav")
    assert first.parent == tmp_path / "b-1" and " " not in first.name


def test_word_error_rate_counts_edits_over_reference_words() -> None:
    assert word_error_rate("press one for billing", "Press 1, for billing.") == 0
    assert word_error_rate("a b c d", "a x c") == pytest.approx(0.5)
    assert corpus_wer([("a b", "a b"), ("c d e f", "")]) == pytest.approx(4 / 6)
