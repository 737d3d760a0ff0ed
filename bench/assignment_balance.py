"""Host balance of the distributor's assignment in audio seconds.

A heavy-tailed batch (lognormal call lengths, `cli.audio.CallLengths`) is routed through the
distributor's own `route_upload`, once with plain rendezvous hashing (file counts balanced)
and once with the duration-aware ledger. Imbalance = the busiest host's seconds over the mean
host's seconds (per unit of capacity): the GPU fleet's makespan grows with it, since the
busiest host finishes last. Pure computation, no broker: seconds to run.
"""

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from cli.audio import CallLengths, file_name
from services.distributor.assignment import UploadLedger
from services.distributor.routing import Incoming, route_upload
from shared.events import FileStageCompleted, FileUploaded, encode
from shared.settings import GpuHost
from shared.topics import Topics

TOPICS = Topics("balance")


def fleet(hosts: int, capacity: int = 4) -> list[GpuHost]:
    return [GpuHost(ip=f"127.0.0.{2 + i}", capacity=capacity) for i in range(hosts)]


def uploads(batch_id: str, lengths: Sequence[float]) -> list[Incoming]:
    """The batch's upload records, as `cofi submit` would publish them (one partition)."""
    return [
        Incoming(
            TOPICS.uploads,
            0,
            offset,
            batch_id.encode(),
            encode(
                FileUploaded(
                    batch_id=batch_id,
                    file_name=file_name(offset),
                    audio_uri=f"file:///calls/{file_name(offset)}",
                    duration_s=length,
                )
            ),
        )
        for offset, length in enumerate(lengths)
    ]


def route_all(
    records: Sequence[Incoming], hosts: list[GpuHost], ledger: UploadLedger | None
) -> list[str]:
    """The host each upload is routed to, by the distributor's own routing function."""
    placed = []
    for record in records:
        [output] = route_upload(record, hosts, TOPICS, ledger=ledger)
        event = output.event
        assert isinstance(event, FileStageCompleted) and event.context.host is not None
        placed.append(event.context.host)
    return placed


def imbalance(placed: Sequence[str], lengths: Sequence[float], hosts: list[GpuHost]) -> float:
    """Max over mean of the hosts' seconds per unit of capacity."""
    seconds = {h.ip: 0.0 for h in hosts}
    for host, length in zip(placed, lengths, strict=True):
        seconds[host] += length
    per_capacity = [seconds[h.ip] / h.capacity for h in hosts]
    return max(per_capacity) / (sum(per_capacity) / len(per_capacity))


@dataclass(frozen=True)
class Balance:
    sigma: float
    files: int
    hosts: int
    rendezvous: float
    duration_aware: float


def measure(files: int, hosts: int, sigma: float, seed: int = 0) -> Balance:
    lengths = CallLengths(sigma=sigma, seed=seed).draw(files)
    gpu = fleet(hosts)
    records = uploads(f"balance-{sigma:g}-{seed}", lengths)
    before = imbalance(route_all(records, gpu, None), lengths, gpu)
    after = imbalance(route_all(records, gpu, UploadLedger()), lengths, gpu)
    return Balance(sigma, files, hosts, before, after)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.assignment_balance", description=__doc__)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--sigma", type=float, action="append", help="default: 1.0 and 1.5")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for sigma in args.sigma or [1.0, 1.5]:
        b = measure(args.files, args.hosts, sigma, args.seed)
        print(
            f"host seconds max/mean, {b.files:,} files on {b.hosts} hosts, lognormal sigma "
            f"{b.sigma:g}: rendezvous {b.rendezvous:.3f}, duration-aware {b.duration_aware:.3f}"
        )


if __name__ == "__main__":
    main()
