"""Which GPU host a file goes to: weighted rendezvous hashing.

The same file always lands on the same host while the set of hosts is unchanged, so a
redelivered upload event routes exactly as before; a host's share follows its capacity;
removing a host moves only that host's files.
"""

import hashlib
import math

from shared.settings import GpuHost


class NoHostAvailable(Exception):
    pass


def _unit_hash(*parts: str) -> float:
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    # Map to (0, 1), never 0 or 1, so the logarithm below is finite and negative.
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


def choose_host(batch_id: str, file_name: str, hosts: list[GpuHost]) -> str:
    candidates = [h for h in hosts if not h.down]
    if not candidates:
        raise NoHostAvailable("every GPU host is marked down")

    def score(host: GpuHost) -> float:
        return -host.capacity / math.log(_unit_hash(batch_id, file_name, host.ip))

    return max(candidates, key=score).ip
