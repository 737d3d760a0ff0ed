"""The finished offsets above a committed position, as the offset commit's metadata string.

A stage commits, per partition, its low-water mark `base` (the lowest offset not finished) and
puts the offsets above it that did finish in the commit's metadata, so that a restart or the
partition's next owner skips them. Pure code: no Kafka here.

Format: `c1` (version), a kind letter, `base` in decimal, `:`, then base64 of either
- `b`: a bitmap, bit r-1 (little-endian, byte by byte) set when `base + r` finished, or
- `r`: run lengths as LEB128 varints, alternating unfinished and finished runs from `base + 1`
  (the first run may be 0),
whichever is shorter. No finished offset above `base` is the empty string. Repeating `base`
ties the set to the offset it is relative to: metadata read back beside another offset (an
operator's reset that kept it, say) is ignored, and the records are redone, never skipped.

The broker refuses metadata longer than `offset.metadata.max.bytes` (4096 by default). The
bitmap's length depends only on the span from `base` to the highest finished offset, so any
set of finished offsets within `max_span(max_bytes)` of `base` fits, whatever the order in
which they finished: a partition that starts no record further than that from its low-water
mark never needs more.
"""

import base64
import binascii
from dataclasses import dataclass

VERSION = "c1"
BITMAP, RUNS = "b", "r"
# Version, kind, the longest int64 in decimal, the separator.
HEADER_MAX = len(VERSION) + 1 + len(str(2**63 - 1)) + 1


def max_span(max_bytes: int) -> int:
    """The highest `offset - base` that a bitmap within `max_bytes` characters can hold."""
    if max_bytes <= HEADER_MAX + 4:
        raise ValueError(f"metadata bound {max_bytes} leaves no room after the header")
    return (max_bytes - HEADER_MAX) // 4 * 3 * 8


@dataclass(frozen=True)
class Encoded:
    metadata: str
    # The finished offsets the metadata holds: all of them, unless the bound forced it to
    # leave the highest out (only when the bound shrank below what the offsets were started
    # under); those are redone after a restart, never skipped wrongly.
    kept: frozenset[int]


def encode(base: int, finished: set[int] | frozenset[int], max_bytes: int) -> Encoded:
    """The metadata for `finished` offsets above `base`, at most `max_bytes` characters."""
    rel = sorted(o - base for o in finished if o > base)
    limit = max_span(max_bytes)
    if rel and rel[-1] > limit:
        rel = [r for r in rel if r <= limit]
    if not rel:
        return Encoded("", frozenset())
    bitmap, runs = _bitmap(rel), _runs(rel)
    kind, raw = (BITMAP, bitmap) if len(bitmap) <= len(runs) else (RUNS, runs)
    text = f"{VERSION}{kind}{base}:{base64.b64encode(raw).decode('ascii')}"
    assert len(text) <= max_bytes, "max_span keeps the bitmap within the bound"
    return Encoded(text, frozenset(base + r for r in rel))


def decode(metadata: str, base: int, max_bytes: int) -> frozenset[int]:
    """The finished offsets above `base` that `metadata` names; empty for anything else
    (no metadata, another format, another base, corrupt text): redoing is always safe.
    Offsets beyond `max_span(max_bytes)` are left out (redone) as `encode` leaves them out,
    so that no metadata, however written, expands to more than the bound holds."""
    limit = max_span(max_bytes)
    if not metadata.startswith(VERSION) or len(metadata) < len(VERSION) + 3:
        return frozenset()
    kind = metadata[len(VERSION)]
    head, sep, payload = metadata[len(VERSION) + 1 :].partition(":")
    if not sep or head != str(base):
        return frozenset()
    try:
        raw = base64.b64decode(payload.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return frozenset()
    rel: list[int] | None
    if kind == BITMAP:
        rel = _from_bitmap(raw[: (limit + 7) // 8], limit)
    elif kind == RUNS:
        rel = _from_runs(raw, limit)
    else:
        return frozenset()
    if not rel:
        return frozenset()
    return frozenset(base + r for r in rel)


def _bitmap(rel: list[int]) -> bytes:
    out = bytearray((rel[-1] + 7) // 8)
    for r in rel:
        out[(r - 1) // 8] |= 1 << ((r - 1) % 8)
    return bytes(out)


def _from_bitmap(raw: bytes, limit: int) -> list[int]:
    return [
        r
        for i, byte in enumerate(raw)
        if byte
        for bit in range(8)
        if byte >> bit & 1 and (r := i * 8 + bit + 1) <= limit
    ]


def _runs(rel: list[int]) -> bytes:
    out = bytearray()
    at = 1  # the next relative offset the runs have not covered
    i = 0
    while i < len(rel):
        j = i
        while j + 1 < len(rel) and rel[j + 1] == rel[j] + 1:
            j += 1
        _varint(out, rel[i] - at)  # unfinished run before it (0 only at the start)
        _varint(out, j - i + 1)  # finished run
        at = rel[j] + 1
        i = j + 1
    return bytes(out)


def _from_runs(raw: bytes, limit: int) -> list[int] | None:
    lengths = _varints(raw)
    if lengths is None or len(lengths) % 2:
        return None
    out: list[int] = []
    at = 1
    for gap, run in zip(lengths[::2], lengths[1::2], strict=True):
        if run == 0 or (gap == 0 and out):
            return None
        at += gap
        if at > limit:
            break
        out.extend(range(at, min(at + run, limit + 1)))
        at += run
    return out


def _varint(out: bytearray, n: int) -> None:
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return


def _varints(raw: bytes) -> list[int] | None:
    values: list[int] = []
    n = shift = 0
    for byte in raw:
        n |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            return None
        if not byte & 0x80:
            values.append(n)
            n = shift = 0
    return values if shift == 0 else None
