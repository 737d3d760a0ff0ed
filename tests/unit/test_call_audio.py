"""The call-length convention (shared.call_audio), the generator and the simulator's model time."""

import statistics
import wave
from pathlib import Path

import pytest

from cli.audio import CallLengths, make_batch, write_call, write_wav
from cli.upload import uploads_for
from shared.call_audio import (
    TIME_COMPRESSION,
    BadCallChunk,
    CallHeaderError,
    call_chunk,
    parse_call_header,
    read_call_header,
)
from simulator.audio import AudioUndecodable, read_wav
from simulator.config import GpuKnobs
from simulator.gpu import model_time_s


def test_a_synthetic_call_is_a_time_compressed_wav_that_declares_its_length(
    tmp_path: Path,
) -> None:
    path = tmp_path / "call.wav"
    write_call(path, 1200.0, tone_hz=300, seed=1)
    header = read_call_header(path)
    assert header.call_s == 1200.0
    assert header.audio_s == pytest.approx(1200.0 / TIME_COMPRESSION, abs=1e-3)
    assert (header.rate, header.channels, header.sample_width) == (8000, 1, 2)
    with wave.open(str(path), "rb") as w:  # an ordinary WAV to any reader
        assert w.getnframes() == header.frames and w.getframerate() == 8000
    info = read_wav(path)  # the simulator decodes it and hears the call's length
    assert info.duration_s == 1200.0 and info.audio_s == header.audio_s


def test_a_wav_without_the_chunk_is_as_long_as_its_audio(tmp_path: Path) -> None:
    path = tmp_path / "plain.wav"
    write_wav(path, 2.0, tone_hz=300, seed=1)
    header = read_call_header(path)
    assert header.declared_call_s is None and header.call_s == 2.0
    assert read_wav(path).duration_s == 2.0


def test_headers_that_are_not_wavs_or_declare_nonsense_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(CallHeaderError):
        parse_call_header(b"not a wav at all")
    path = tmp_path / "call.wav"
    write_call(path, 60.0, tone_hz=300, seed=1)
    raw = path.read_bytes()
    good = call_chunk(60.0, TIME_COMPRESSION)
    bad = b"cofi" + len(good[8:]).to_bytes(4, "little") + b"{" + b" " * (len(good) - 9)
    path.write_bytes(raw.replace(good, bad))
    with pytest.raises(BadCallChunk):
        read_call_header(path)
    with pytest.raises(AudioUndecodable):
        read_wav(path)  # a model server answers 422


def test_call_lengths_are_lognormal_capped_and_deterministic_from_the_seed() -> None:
    lengths = CallLengths(median_s=210, sigma=1.0, cap_s=3600, seed=3).draw(20_000)
    assert lengths == CallLengths(median_s=210, sigma=1.0, cap_s=3600, seed=3).draw(20_000)
    assert lengths != CallLengths(median_s=210, sigma=1.0, cap_s=3600, seed=4).draw(20_000)
    assert 190 < statistics.median(lengths) < 230
    assert max(lengths) == 3600 and min(lengths) > 0
    assert statistics.mean(lengths) > 1.5 * statistics.median(lengths)  # the heavy tail
    assert set(CallLengths(median_s=200, sigma=0).draw(5)) == {200.0}


def test_make_batch_writes_the_drawn_lengths_and_uploads_carry_them(tmp_path: Path) -> None:
    lengths = CallLengths(sigma=1.5, seed=9)
    paths = make_batch(tmp_path, 12, corrupt=1, short=1, lengths=lengths)
    drawn = lengths.draw(12)
    events = uploads_for("b", paths)
    assert events[0].duration_s is None  # corrupt: no header to read
    assert events[1].duration_s == pytest.approx(0.4)  # short: under the triage rule's 1 s
    assert [e.duration_s for e in events[2:]] == pytest.approx(drawn[2:], abs=1e-3)


def test_model_time_is_base_plus_real_time_factor_times_what_the_model_reads() -> None:
    stt = GpuKnobs(latency_s=0.1, rtf=1 / 46, latency_scale=0.5)
    assert model_time_s(stt, 460.0) == pytest.approx((0.1 + 10.0) * 0.5)
    lid = GpuKnobs(latency_s=0.05, rtf=0.02, window_s=30.0)
    assert model_time_s(lid, 3600.0) == pytest.approx(0.05 + 0.6)  # one 30-second window
    assert model_time_s(lid, 10.0) == pytest.approx(0.05 + 0.2)


def test_the_simulator_and_the_product_read_the_same_length_from_every_file(
    tmp_path: Path,
) -> None:
    # The simulator implements the format itself (it may not import product code).
    paths = make_batch(tmp_path, 30, short=2, lengths=CallLengths(sigma=1.5, seed=2))
    for path in paths:
        assert read_wav(path).duration_s == pytest.approx(read_call_header(path).call_s)
