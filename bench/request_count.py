"""A direct count of the Kafka requests a set of processes sent (issue 21, figure 5).

`hook_env(folder)` is the environment that makes a process the bench starts count its
requests (`bench/kafka_requests/sitecustomize.py`); `read(folder, pids)` sums what those
processes counted so far, by kind. Two reads bracket a batch."""

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from bench.kafka_requests.sitecustomize import ENV

HOOK_DIR = Path(__file__).resolve().parent / "kafka_requests"


def hook_env(folder: Path, pythonpath: str | None = None) -> dict[str, str]:
    """The hook's folder ahead of `pythonpath` (default: this process's)."""
    folder.mkdir(parents=True, exist_ok=True)
    rest = os.environ.get("PYTHONPATH", "") if pythonpath is None else pythonpath
    path = os.pathsep.join(p for p in (str(HOOK_DIR), rest) if p)
    return {"PYTHONPATH": path, ENV: str(folder)}


def read(folder: Path, pids: Iterable[int]) -> Counter[str]:
    """The requests the `pids` sent so far, by kind (a process that sent none yet: nothing)."""
    total: Counter[str] = Counter()
    for pid in pids:
        path = folder / f"{pid}.json"
        if path.exists():
            total.update({k: int(v) for k, v in json.loads(path.read_text()).items()})
    return total


def between(before: Mapping[str, int], after: Mapping[str, int]) -> Counter[str]:
    return Counter({k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)})
