"""Which GPU host a file goes to: weighted rendezvous hashing, balanced by audio seconds.

`choose_host` is plain capacity-weighted rendezvous hashing: the same file always lands on the
same host while the set of hosts is unchanged, a host's share of *files* follows its
capacity, and removing a host moves only that host's files. Call lengths are heavy-tailed, so
equal file counts are not equal work: the host that draws the hour-long calls finishes last.

`UploadLedger` balances *seconds*: a file whose upload carries `duration_s` goes to the least
loaded (seconds per unit of capacity, counted per batch) of its `top_k` best rendezvous hosts;
a file without one keeps its rendezvous host. The ledger's state is a pure function of the
uploads partition read so far (a batch's uploads share one partition: the topic is keyed by
batch id), so the placement of the upload at offset `o` depends only on the records before
`o`:

- a redelivered upload (an offset below what the ledger has read) is answered from the
  record of the first placement, without touching the loads;
- after a restart or a rebalance, the distributor first replays the partition from its
  beginning up to the first offset it is given (`ledger_replay.py`), which rebuilds exactly
  the state the previous owner had;
- a duplicate upload of a file (a later offset, same file) finds the file's record and goes
  to the same host.

Memory: per batch, a sorted array of 8-byte file hashes and one byte per file for its host
(`FileMemo`, ~9 bytes a file), for the last `max_batches` batches of each partition. The
limits of determinism: a change of `GPU_HOSTS` between the first delivery and a replay moves
files, as it does with plain rendezvous hashing; records lost to the topic's retention, or
batches forgotten past `max_batches`, are placed by rendezvous hashing.
"""

import hashlib
import math
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.settings import GpuHost

TOP_K = 2  # a file goes to the least loaded of its k best rendezvous hosts
MAX_BATCHES = 16  # batches remembered per partition


class NoHostAvailable(Exception):
    """No GPU host may take a file now (all marked down or drained): wait, not fail."""


def _unit_hash(*parts: str) -> float:
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    # Map to (0, 1), never 0 or 1, so the logarithm below is finite and negative.
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


def _candidates(hosts: Sequence[GpuHost]) -> list[GpuHost]:
    candidates = [h for h in hosts if not h.down]
    if not candidates:
        raise NoHostAvailable("every GPU host is marked down")
    return candidates


def ranked_hosts(batch_id: str, file_name: str, hosts: Sequence[GpuHost]) -> list[GpuHost]:
    """The hosts that are not down, best rendezvous score first."""

    def score(host: GpuHost) -> float:
        return -host.capacity / math.log(_unit_hash(batch_id, file_name, host.ip))

    return sorted(_candidates(hosts), key=score, reverse=True)


def choose_host(batch_id: str, file_name: str, hosts: Sequence[GpuHost]) -> str:
    return ranked_hosts(batch_id, file_name, hosts)[0].ip


class FileMemo:
    """file name -> host index, in ~9 bytes a file (sorted 64-bit hashes, one byte a host)."""

    def __init__(self) -> None:
        self._keys = array("Q")
        self._hosts = array("B")

    @staticmethod
    def _key(file_name: str) -> int:
        return int.from_bytes(hashlib.blake2b(file_name.encode(), digest_size=8).digest(), "big")

    def get(self, file_name: str) -> int | None:
        key = self._key(file_name)
        i = bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return self._hosts[i]
        return None

    def put(self, file_name: str, host: int) -> None:
        key = self._key(file_name)
        i = bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            self._hosts[i] = host
        else:
            self._keys.insert(i, key)
            self._hosts.insert(i, host)

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class BatchLoad:
    seconds: dict[str, float] = field(default_factory=dict)  # host -> audio seconds placed
    files: FileMemo = field(default_factory=FileMemo)  # where each balanced file went
    hosts: list[str] = field(default_factory=list)  # host index -> ip, for `files`

    def host_index(self, ip: str) -> int:
        if ip not in self.hosts:
            if len(self.hosts) >= 255:
                raise ValueError("more than 255 GPU hosts in one batch")
            self.hosts.append(ip)
        return self.hosts.index(ip)

    def recorded(self, file_name: str, ranked: Sequence[GpuHost]) -> str | None:
        """Where the file went, if it was placed here and that host is still up."""
        index = self.files.get(file_name)
        if index is None:
            return None
        ip = self.hosts[index]
        return ip if any(h.ip == ip for h in ranked) else None


@dataclass
class PartitionLedger:
    """What one uploads partition has placed, up to (not including) `next_offset`."""

    next_offset: int
    batches: "OrderedDict[str, BatchLoad]" = field(default_factory=OrderedDict)


class UploadLedger:
    """Duration-aware placement whose state is a function of each partition's prefix."""

    def __init__(self, top_k: int = TOP_K, max_batches: int = MAX_BATCHES) -> None:
        if top_k < 1 or max_batches < 1:
            raise ValueError("top_k and max_batches must be at least 1")
        self.top_k = top_k
        self.max_batches = max_batches
        self._partitions: dict[int, PartitionLedger] = {}

    def next_offset(self, partition: int) -> int | None:
        """The offset the ledger expects next on `partition`; None if it has read nothing."""
        ledger = self._partitions.get(partition)
        return None if ledger is None else ledger.next_offset

    def needs_replay(self, partition: int, offset: int) -> bool:
        """True if records before `offset` were never read: replay them first."""
        expected = self.next_offset(partition)
        return expected is None or offset > expected

    def start(self, partition: int, offset: int) -> None:
        """Begin a partition at `offset` (its first retained record) with nothing placed."""
        self._partitions[partition] = PartitionLedger(next_offset=offset)

    def skip(self, partition: int, offset: int) -> None:
        """A record that places nothing (BatchClosed, an undecodable one) was read."""
        ledger = self._partitions.setdefault(partition, PartitionLedger(offset))
        ledger.next_offset = max(ledger.next_offset, offset + 1)

    def place(
        self,
        partition: int,
        offset: int,
        batch_id: str,
        file_name: str,
        duration_s: float | None,
        hosts: Sequence[GpuHost],
    ) -> str:
        """The host of the upload at (partition, offset); records it if the offset is new."""
        ranked = ranked_hosts(batch_id, file_name, hosts)
        ledger = self._partitions.setdefault(partition, PartitionLedger(offset))
        batch = ledger.batches.get(batch_id)
        if offset < ledger.next_offset:
            # A redelivery: the first placement's answer, the loads untouched. Files without
            # a duration (and those of forgotten batches) follow the hash, as they did then.
            known = None if batch is None else batch.recorded(file_name, ranked)
            return known or ranked[0].ip
        ledger.next_offset = offset + 1
        if batch is None:
            batch = ledger.batches[batch_id] = BatchLoad()
            while len(ledger.batches) > self.max_batches:
                ledger.batches.popitem(last=False)
        known = batch.recorded(file_name, ranked)
        if known is not None:
            return known  # a duplicate upload of a file already placed
        if duration_s is None:
            return ranked[0].ip
        loads = batch.seconds
        host = min(ranked[: self.top_k], key=lambda h: loads.get(h.ip, 0.0) / h.capacity).ip
        loads[host] = loads.get(host, 0.0) + duration_s
        batch.files.put(file_name, batch.host_index(host))
        return host
