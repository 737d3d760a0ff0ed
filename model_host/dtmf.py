"""DTMF key presses in telephone audio: the Goertzel/DFT power at the eight DTMF frequencies.

A frame holds a key when one low-group and one high-group tone carry most of its energy; a
key counts once it lasts two frames, so speech, whose energy is spread, does not read as keys.
"""

import numpy as np
import numpy.typing as npt

RATE = 8000
LOW = (697.0, 770.0, 852.0, 941.0)
HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
FRAME = 320  # 40 ms: resolves the 73 Hz between neighbouring low tones
STEP = 160
TONE_SHARE = 0.6  # of the frame's energy in the two tones
NEIGHBOUR = 0.2  # the second tone of a group, relative to the first
MIN_FRAMES = 2
MIN_RMS = 0.003


def _powers(frames: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    n = np.arange(FRAME)
    freqs = np.array(LOW + HIGH)
    angle = 2 * np.pi * np.outer(n, freqs) / RATE
    c = frames @ np.cos(angle)
    s = frames @ np.sin(angle)
    amplitude = 2 * np.sqrt(c**2 + s**2) / FRAME
    # A sine of amplitude A carries A^2 / 2 of energy per sample.
    return np.asarray(amplitude**2 / 2, np.float64)


def frame_keys(samples: npt.NDArray[np.float32]) -> list[str]:
    """The key each 20 ms step holds ('' for none); samples at 8 kHz."""
    if len(samples) < FRAME:
        return []
    count = 1 + (len(samples) - FRAME) // STEP
    idx = np.arange(FRAME)[None, :] + STEP * np.arange(count)[:, None]
    frames = samples[idx].astype(np.float32)
    energy = (frames.astype(np.float64) ** 2).mean(axis=1)
    power = _powers(frames)
    keys: list[str] = []
    for i in range(count):
        low, high = power[i, :4], power[i, 4:]
        lo, hi = int(low.argmax()), int(high.argmax())
        rest_low = np.delete(low, lo).max()
        rest_high = np.delete(high, hi).max()
        held = (
            energy[i] > MIN_RMS**2
            and (low[lo] + high[hi]) > TONE_SHARE * energy[i]
            and rest_low < NEIGHBOUR * low[lo]
            and rest_high < NEIGHBOUR * high[hi]
        )
        keys.append(KEYS[lo][hi] if held else "")
    return keys


def decode(samples: npt.NDArray[np.float32]) -> str:
    """The keys pressed, in order: a run of at least MIN_FRAMES frames is one press."""
    out: list[str] = []
    run_key, run = "", 0
    for key in [*frame_keys(samples), ""]:
        if key == run_key:
            run += 1
            continue
        if run_key and run >= MIN_FRAMES:
            out.append(run_key)
        run_key, run = key, 1
    return "".join(out)
