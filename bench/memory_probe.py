"""Memory of one service in isolation: the LLM stages fed many batches of files' events.

`python -m bench.memory_probe --batches 5 --files 10000 --out /tmp/memory-probe` starts the
simulator (its LLM only is used) and one `llm_stage` process on a topic prefix of its own,
then, batch after batch, puts `files` stt-completed events of a new batch id on the llm1
topic and waits until as many have left llm2 (done or failed). After each batch it records
the process's RSS and peak RSS (VmHWM), and with `--tracemalloc N` has the process dump a
tracemalloc snapshot (N frames per traceback), whose differences name the lines that hold
the memory that grew (`--objects` counts live objects by type). No audio and no GPU stage
are needed: the LLM stages read only the transcript in the event's context.

The probe uses its own addresses (simulator LLM 127.0.0.1:58000, control 127.0.0.1:55099,
GPU ports 55010-55013 on 127.0.3.1, unused), so it runs beside `make bench` and the tests,
but not beside another probe. Experiments: `--env MALLOC_ARENA_MAX=2`; `--trim` calls
glibc's malloc_trim(0) in the process after each batch (RSS before and after tell live
memory from memory glibc keeps but could give back).

The service runs under `python -m bench.memory_probe child`, which installs the snapshot
signal (SIGUSR1) and then runs `services.llm_stage.main.main` unchanged.
"""

import argparse
import asyncio
import ctypes
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.infra import delete_topics, end_offsets, new_run_id, reader
from bench.procfs import usage
from cli.processes import ProcessGroup, service_argv
from shared.events import FileContext, FileStageCompleted, encode, file_key
from shared.provisioning import create_pipeline_topics
from shared.settings import CommonSettings
from shared.stages import GPU_STAGES

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.3.1"
LLM_PORT = 58000
CONTROL_PORT = 55099
GPU_PORTS = {f"{stage.upper()}_PORT": str(55010 + i) for i, stage in enumerate(GPU_STAGES)}
SNAPSHOT_DIR_ENV = "MEMORY_PROBE_DIR"
TRIM_ENV = "MEMORY_PROBE_TRIM"
OBJECTS_ENV = "MEMORY_PROBE_OBJECTS"


# --- inside the service process -------------------------------------------------------------


def child_main() -> None:
    """Run the LLM stages with a SIGUSR1 handler that writes what the process holds."""
    folder = Path(os.environ[SNAPSHOT_DIR_ENV])
    count = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal count
        count += 1
        gc.collect()
        facts: dict[str, object] = {"rss_kib_before_trim": usage(os.getpid()).rss_kib}
        if tracemalloc.is_tracing():
            tracemalloc.take_snapshot().dump(str(folder / f"snapshot-{count}.tm"))
            facts["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
        if os.environ.get(OBJECTS_ENV):
            types = Counter(type(o).__qualname__ for o in gc.get_objects())
            facts["gc_objects"] = dict(types.most_common(80))
        if os.environ.get(TRIM_ENV):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            facts["rss_kib_after_trim"] = usage(os.getpid()).rss_kib
        (folder / f"facts-{count}.json").write_text(json.dumps(facts))

    signal.signal(signal.SIGUSR1, on_signal)
    from services.llm_stage.main import main

    main([])


# --- the probe ------------------------------------------------------------------------------


def stt_done(batch_id: str, index: int) -> bytes:
    # A transcript of the size the simulator's STT gives a two-minute call.
    words = " ".join(f"word{(index * 7 + i) % 997}" for i in range(80))
    event = FileStageCompleted(
        batch_id=batch_id,
        file_name=f"call-{index:06d}.wav",
        stage="stt",
        context=FileContext(
            audio_uri=f"file:///calls/{batch_id}/call-{index:06d}.wav",
            language="en",
            duration_s=120.0,
            transcript=words,
        ),
    )
    return encode(event)


async def feed(producer: AIOKafkaProducer, topic: str, batch_id: str, files: int) -> None:
    pending = []
    for i in range(files):
        name = f"call-{i:06d}.wav"
        pending.append(
            await producer.send(topic, stt_done(batch_id, i), key=file_key(batch_id, name))
        )
        if len(pending) >= 1000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)


async def wait_finished(bootstrap: str, topics: list[str], total: int, pid: int) -> None:
    async with reader(bootstrap) as consumer:
        while sum((await end_offsets(consumer, topics)).values()) < total:
            if not Path(f"/proc/{pid}").exists():
                raise RuntimeError("llm_stage exited; see its log")
            await asyncio.sleep(0.5)


def ask_for_facts(
    pid: int, folder: Path, number: int, timeout_s: float = 120.0
) -> dict[str, object]:
    os.kill(pid, signal.SIGUSR1)
    path = folder / f"facts-{number}.json"
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"llm_stage wrote no {path.name} within {timeout_s:.0f}s")
        time.sleep(0.2)
    time.sleep(0.2)  # written in one call, but let it be closed
    facts: dict[str, object] = json.loads(path.read_text())
    return facts


def compare(folder: Path, first: int, last: int, top: int = 25) -> list[str]:
    """The tracebacks whose memory grew most between two snapshots."""
    old = tracemalloc.Snapshot.load(str(folder / f"snapshot-{first}.tm"))
    new = tracemalloc.Snapshot.load(str(folder / f"snapshot-{last}.tm"))
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    old, new = old.filter_traces(ignore), new.filter_traces(ignore)
    lines = []
    for stat in new.compare_to(old, "traceback")[:top]:
        lines.append(
            f"{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks "
            f"(now {stat.size / 1024:.1f} KiB in {stat.count})"
        )
        lines += ["    " + line for line in stat.traceback.format(most_recent_first=True)]
    return lines


async def probe(args: argparse.Namespace) -> None:
    prefix = f"memprobe{new_run_id()}"
    out: Path = args.out
    folder = out / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    settings = CommonSettings(
        kafka_bootstrap_servers=args.bootstrap,
        topic_prefix=prefix,
        gpu_hosts=HOST,
    )
    topics = settings.topics
    extra = dict(kv.split("=", 1) for kv in args.env)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
        "TOPIC_PREFIX": prefix,
        "GPU_HOSTS": HOST,
        "LLM_API_URL": f"http://127.0.0.1:{LLM_PORT}/v1",
        "LOG_JSON": "true",
        SNAPSHOT_DIR_ENV: str(folder),
        **GPU_PORTS,
        **extra,
    }
    if args.trim:
        env[TRIM_ENV] = "1"
    if args.objects:
        env[OBJECTS_ENV] = "1"
    group = ProcessGroup(log_dir=out, env=env)
    await create_pipeline_topics(settings)
    rows: list[dict[str, object]] = []
    try:
        group.start(
            "simulator",
            service_argv(
                "simulator",
                "--hosts",
                HOST,
                "--llm-port",
                str(LLM_PORT),
                "--control-port",
                str(CONTROL_PORT),
                "--latency-scale",
                "0",
            ),
        )
        group.wait_for_log("simulator", "simulator ready", timeout_s=60)
        python = [sys.executable]
        if args.tracemalloc:
            python += ["-X", f"tracemalloc={args.tracemalloc}"]
        llm = group.start("llm", [*python, "-m", "bench.memory_probe", "child"])
        pid = llm.popen.pid
        producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=5)
        await producer.start()
        try:
            finished = [topics.done, topics.failed]
            started = time.monotonic()
            for number in range(1, args.batches + 1):
                batch_id = f"{prefix}-b{number}"
                await feed(producer, topics.llm("llm1"), batch_id, args.files)
                await wait_finished(args.bootstrap, finished, number * args.files, pid)
                # Measured before the snapshot, whose own allocations would count otherwise.
                used = usage(pid)
                facts = ask_for_facts(pid, folder, number)
                row: dict[str, object] = {
                    "batch": number,
                    "files": number * args.files,
                    "seconds": round(time.monotonic() - started, 1),
                    "rss_kib": used.rss_kib,
                    "peak_rss_kib": used.peak_rss_kib,
                    "cpu_s": round(used.cpu_s, 1),
                    **{k: v for k, v in facts.items() if k != "gc_objects"},
                }
                rows.append(row)
                if "gc_objects" in facts:
                    objects = json.dumps(facts["gc_objects"], indent=0)
                    (out / f"gc-objects-{number}.json").write_text(objects)
                print(json.dumps(row), flush=True)
        finally:
            await producer.stop()
    finally:
        await asyncio.to_thread(group.stop_all)
        await delete_topics(args.bootstrap, prefix)
    (out / "batches.json").write_text(json.dumps(rows, indent=2))
    if args.tracemalloc and args.batches >= 2:
        diff = compare(folder, 1, args.batches)
        (out / "tracemalloc-diff.txt").write_text("\n".join(diff) + "\n")
        print("\n".join(diff[:80]))


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["child"]:
        child_main()
        return
    p = argparse.ArgumentParser(prog="python -m bench.memory_probe", description=__doc__)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--files", type=int, default=10_000, help="files per batch")
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--out", type=Path, default=Path("/tmp/memory-probe"))
    p.add_argument("--tracemalloc", type=int, default=0, help="frames per traceback; 0 = off")
    p.add_argument("--trim", action="store_true", help="malloc_trim(0) after each batch")
    p.add_argument("--objects", action="store_true", help="count live objects by type")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service")
    asyncio.run(_until_signalled(p.parse_args(argv)))


async def _until_signalled(args: argparse.Namespace) -> None:
    # SIGTERM (or SIGINT, which a background job ignores) cancels, so the processes are
    # stopped and the topics deleted.
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    await probe(args)


if __name__ == "__main__":
    main()
