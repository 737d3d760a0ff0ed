"""Figure 1's denominator: a bare Kafka chain that makes the pipeline's model calls.

Same topics as the pipeline (`Topics.all_topics`: uploads, a topic per GPU stage and host,
triage, llm1, llm2, done), same processes (a "distributor" running the distribute and triage
hops, one "gpu-<host>" per host running its four GPU hops, an "llm" running the two LLM hops),
the same simulator and the same files. Each hop is a plain loop: consume a poll's records,
make one aiohttp POST per record (GPU hops to the file's host, LLM hops to the chat API with a
minimal body; at most the host's capacity, or the LLM stage's concurrency, at a time), produce
each record to the next topic as a payload of the size the pipeline's message has there, wait
for the acks and commit. No validation, no tracking, no retries, no dead letters, no metrics: a
call that does not answer 200 stops the hop's process, and the bench with it.

The file's name, audio URI and host travel in record headers; the IVR and LID hops read the
one field of the answer that triage needs (`is_ivr`, `language`), so the triage hop skips the
same files the pipeline's default rules do (an IVR-only call, a language STT does not serve).

`python -m bench.model_chain ROLE CONFIG_JSON` runs one process's hops until SIGTERM.
"""

import asyncio
import json
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from bench import request_count
from bench.infra import end_offsets, reader
from bench.procfs import usage
from bench.stack import cpu_between, shared_usage
from cli.processes import ProcessGroup
from shared.kafka import ensure_topics, make_consumer, make_producer
from shared.pipeline import input_topic, output_topic, spec, stages_of
from shared.runtime.lifecycle import stop_event_on_signals
from shared.topics import Topics

GPU_HOPS = tuple(row.name for row in stages_of("gpu_stage"))  # denoise, ivr, lid, stt
LLM_HOPS = tuple(row.name for row in stages_of("llm_stage"))  # llm1, llm2
# services/distributor/triage_rules.json: what STT serves (a unit test keeps them in step).
STT_LANGUAGES = (b"en", b"hi", b"es")
LLM_MODEL = "cofi-call-analyst"  # the LLM stage's default `LLM_MODEL`

Headers = dict[str, bytes]
IDLE_S = 3.0  # how long the chain's idle CPU is measured, after the warm-up
BROKER = "kafka broker"  # its name in `bench.stack.shared_usage`


@dataclass(frozen=True)
class ChainConfig:
    """What every hop process needs; passed to it as JSON."""

    bootstrap: str
    prefix: str
    hosts: list[str]
    sizes: dict[str, int]  # bytes per record on each stage's input topic, and on "done"
    gpu_ports: dict[str, int]  # GPU stage -> port on every host
    llm_url: str  # .../v1/chat/completions
    capacity: int  # calls in flight per (GPU stage, host), as the pipeline's max_in_flight
    llm_concurrency: int  # calls in flight per LLM process, as LLM_MAX_CONCURRENCY

    def topics(self) -> list[str]:
        """The pipeline's topics less the two no file crosses here (failed, control)."""
        t = Topics(self.prefix)
        return [x for x in t.all_topics(self.hosts) if x not in (t.failed, t.control)]

    def payload_size(self, topic: str) -> int:
        t = Topics(self.prefix)
        if topic == t.done:
            return self.sizes["done"]
        if topic == t.uploads:
            return self.sizes["distribute"]
        stage = topic.removeprefix(f"{self.prefix}.").split(".", 1)[0]
        return self.sizes[stage]


def roles(hosts: Sequence[str]) -> dict[str, list[tuple[str, str | None]]]:
    """Process name -> its hops (stage, host), laid out as the pipeline's processes are."""
    layout: dict[str, list[tuple[str, str | None]]] = {
        "distributor": [(row.name, None) for row in stages_of("distributor")]
    }
    for host in hosts:
        layout[f"gpu-{host}"] = [(stage, host) for stage in GPU_HOPS]
    layout["llm"] = [(stage, None) for stage in LLM_HOPS]
    return layout


def host_for(key: bytes, hosts: Sequence[str]) -> str:
    """The distribute hop's choice: a hash of the record key (no durations, no balancing)."""
    return hosts[zlib.crc32(key) % len(hosts)]


def triage_skips(headers: Mapping[str, bytes]) -> bool:
    return headers.get("ivr") == b"1" or headers.get("lang") not in STT_LANGUAGES


def next_topic(topics: Topics, stage: str, headers: Mapping[str, bytes]) -> str:
    """Where a hop sends a record: the pipeline's flow, by triage's route (the bench's rule
    standing in for the rule book) where the table gives the stage routes."""
    host = headers["host"].decode() if "host" in headers else None
    route = None
    if spec(stage).routes:
        route = "skip" if triage_skips(headers) else "stt"
    return output_topic(stage, topics, host, route)


def gpu_request(stage: str, headers: Mapping[str, bytes]) -> bytes:
    """The GPU stage's request body (`services.gpu_stage.exchange.request_for`'s fields)."""
    inputs = {"language": headers["lang"].decode()} if stage == "stt" and "lang" in headers else {}
    return json.dumps(
        {
            "batch_id": headers["batch"].decode(),
            "file_name": headers["file"].decode(),
            "audio_uri": headers["uri"].decode(),
            "inputs": inputs,
        }
    ).encode()


def chat_request(stage: str, headers: Mapping[str, bytes]) -> bytes:
    """A minimal chat completion naming the file in `user`, as the LLM stage does."""
    return json.dumps(
        {
            "model": LLM_MODEL,
            "messages": [
                {"role": "user", "content": f"{stage}: Return JSON with keys: summary"},
            ],
            "temperature": 0,
            "user": headers["batch"].decode() + "/" + headers["file"].decode(),
        }
    ).encode()


def answer_headers(stage: str, answer: bytes) -> Headers:
    """The one field of an IVR or LID answer the triage hop needs, as a header."""
    if stage == "ivr":
        return {"ivr": b"1" if json.loads(answer)["is_ivr"] else b"0"}
    if stage == "lid":
        return {"lang": str(json.loads(answer)["language"]).encode()}
    return {}


class HopProcess:
    """One process's hops: a consumer each, one producer and one HTTP session shared."""

    def __init__(self, config: ChainConfig, role: str) -> None:
        self.config = config
        self.role = role
        self.topics = Topics(config.prefix)
        self.hops = roles(config.hosts)[role]
        self.payloads = {t: b"x" * config.payload_size(t) for t in config.topics()}
        llm_slots = asyncio.Semaphore(config.llm_concurrency)
        self.slots = {
            (stage, host): asyncio.Semaphore(config.capacity) if stage in GPU_HOPS else llm_slots
            for stage, host in self.hops
        }

    async def run(self) -> None:
        stop = stop_event_on_signals()
        producer = make_producer(self.config.bootstrap, f"{self.config.prefix}-{self.role}")
        await producer.start()
        try:
            async with aiohttp.ClientSession() as session:
                loops = [
                    asyncio.create_task(self.hop(stage, host, producer, session, stop))
                    for stage, host in self.hops
                ]
                stopped = asyncio.create_task(stop.wait())
                done, _ = await asyncio.wait([stopped, *loops], return_when=asyncio.FIRST_COMPLETED)
                for task in [stopped, *loops]:
                    task.cancel()
                for task in done:
                    if task is not stopped:
                        task.result()  # a hop that failed: its error, and the process exits
        finally:
            await producer.stop()

    async def hop(
        self,
        stage: str,
        host: str | None,
        producer: AIOKafkaProducer,
        session: aiohttp.ClientSession,
        stop: asyncio.Event,
    ) -> None:
        name = f"{self.config.prefix}-chain-{stage}" + (f"-{host}" if host else "")
        consumer = make_consumer(self.config.bootstrap, name, name)
        consumer.subscribe([input_topic(stage, self.topics, host)])
        await consumer.start()
        slots = self.slots[(stage, host)]
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                records = [r for rs in batch.values() for r in rs]
                if not records:
                    continue
                forwarded = await asyncio.gather(
                    *(self.forward(stage, host, r, session, slots) for r in records)
                )
                acks = []
                for record, headers in zip(records, forwarded, strict=True):
                    topic = next_topic(self.topics, stage, headers)
                    acks.append(
                        await producer.send(
                            topic,
                            self.payloads[topic],
                            key=record.key,
                            headers=list(headers.items()),
                        )
                    )
                await asyncio.gather(*acks)
                await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items() if rs})
        finally:
            await consumer.stop()

    async def forward(
        self,
        stage: str,
        host: str | None,
        record: ConsumerRecord[bytes, bytes],
        session: aiohttp.ClientSession,
        slots: asyncio.Semaphore,
    ) -> Headers:
        """The record's headers for the next hop, after this hop's model call if it has one."""
        headers: Headers = dict(record.headers)
        if stage == "distribute":
            headers["host"] = host_for(record.key or b"", self.config.hosts).encode()
            return headers
        if stage == "triage":
            return headers
        if stage in GPU_HOPS:
            url = f"http://{host}:{self.config.gpu_ports[stage]}/v1/{stage}"
            body = gpu_request(stage, headers)
        else:
            url, body = self.config.llm_url, chat_request(stage, headers)
        async with (
            slots,
            session.post(url, data=body, headers={"Content-Type": "application/json"}) as response,
        ):
            answer = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url} answered {response.status}: {answer[:300]!r}")
        return headers | answer_headers(stage, answer)


@dataclass(frozen=True)
class ChainRun:
    """One timed run of the chain: its makespan and the CPU its processes used meanwhile."""

    files: int
    makespan_s: float
    cpu_s: dict[str, float]  # hop process -> CPU seconds
    simulator_cpu_s: float
    broker_cpu_s: float | None  # the shared broker's, other work included; None if not found
    transcribed: int  # files routed to STT (the rest skipped by triage)
    idle_cpu_per_s: float = 0.0  # CPU seconds per second its processes used with no work
    # Kafka requests its processes sent during the batch, by kind (empty: not counted).
    kafka_requests: dict[str, int] = field(default_factory=dict)

    @property
    def total_cpu_s(self) -> float:
        return sum(self.cpu_s.values())


async def produce_uploads(
    bootstrap: str, topic: str, batch_id: str, paths: Sequence[Path], size: int
) -> None:
    """The upload system's side: one record per file, its name and URI in headers."""
    producer = make_producer(bootstrap, "bench-chain-upload")
    await producer.start()
    try:
        payload = b"x" * size
        pending = []
        for path in paths:
            headers = [
                ("batch", batch_id.encode()),
                ("file", path.name.encode()),
                ("uri", path.resolve().as_uri().encode()),
            ]
            key = f"{batch_id}/{path.name}".encode()
            pending.append(await producer.send(topic, payload, key=key, headers=headers))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def wait_for_records(
    consumer: AIOKafkaConsumer, topic: str, count: int, group: ProcessGroup, timeout_s: float
) -> float:
    """Wait until `topic` holds `count` records; returns that moment (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await end_offsets(consumer, [topic]))[topic] >= count:
            return time.monotonic()
        dead = group.dead()
        if dead:
            raise RuntimeError(
                "bare chain process exited: " + ", ".join(f"{p.name} ({p.log_path})" for p in dead)
            )
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{topic} did not reach {count} records within {timeout_s:.0f}s")


def requests_of(folder: Path | None, pids: Iterable[int]) -> Counter[str]:
    return request_count.read(folder, pids) if folder is not None else Counter()


async def run_chain(
    config: ChainConfig,
    batch: Sequence[Path],
    warmup: Sequence[Path],
    log_dir: Path,
    simulator_pid: int,
    partitions: int = 4,
    count_requests: Path | None = None,
) -> ChainRun:
    """`batch` through the chain after a warm-up through every hop (each consumer has joined
    its group before anything is timed); `count_requests`: a folder where its processes
    count their Kafka requests."""
    topics = Topics(config.prefix)
    await ensure_topics(config.bootstrap, config.topics(), partitions)
    env = request_count.hook_env(count_requests) if count_requests is not None else {}
    group = ProcessGroup(log_dir=log_dir, env=env)
    try:
        for role in roles(config.hosts):
            argv = [sys.executable, "-m", "bench.model_chain", role, json.dumps(asdict(config))]
            group.start(f"chain-{role}", argv)
        size = config.sizes["distribute"]
        async with reader(config.bootstrap) as consumer:
            await produce_uploads(config.bootstrap, topics.uploads, "chain-warmup", warmup, size)
            await wait_for_records(consumer, topics.done, len(warmup), group, timeout_s=180)
            stt_before = (await end_offsets(consumer, [topics.llm("llm1")]))[topics.llm("llm1")]
            pids = {name: p.popen.pid for name, p in group.processes.items()}
            # Its cost per second with no work, as the pipeline's is measured.
            idle_from = time.monotonic()
            idle_before = sum(usage(pid).cpu_s for pid in pids.values())
            await asyncio.sleep(IDLE_S)
            idle_cpu = sum(usage(pid).cpu_s for pid in pids.values()) - idle_before
            idle_cpu_per_s = idle_cpu / (time.monotonic() - idle_from)
            before = {name: usage(pid).cpu_s for name, pid in pids.items()}
            simulator_before = usage(simulator_pid).cpu_s
            broker_before = shared_usage().get(BROKER)
            requests_before = requests_of(count_requests, pids.values())
            started = time.monotonic()
            await produce_uploads(config.bootstrap, topics.uploads, "chain-batch", batch, size)
            finished = await wait_for_records(
                consumer, topics.done, len(warmup) + len(batch), group, timeout_s=1800
            )
            after = {name: usage(pid).cpu_s for name, pid in pids.items()}
            simulator_after = usage(simulator_pid).cpu_s
            broker_after = shared_usage().get(BROKER)
            requests = request_count.between(
                requests_before, requests_of(count_requests, pids.values())
            )
            stt_after = (await end_offsets(consumer, [topics.llm("llm1")]))[topics.llm("llm1")]
        return ChainRun(
            files=len(batch),
            makespan_s=finished - started,
            cpu_s={name: after[name] - before[name] for name in pids},
            simulator_cpu_s=simulator_after - simulator_before,
            broker_cpu_s=cpu_between(broker_before, broker_after),
            transcribed=stt_after - stt_before,
            idle_cpu_per_s=idle_cpu_per_s,
            kafka_requests=dict(requests),
        )
    finally:
        await asyncio.to_thread(group.stop_all)


def main(argv: Sequence[str]) -> None:
    role, raw = argv
    config = ChainConfig(**json.loads(raw))
    asyncio.run(HopProcess(config, role).run())


if __name__ == "__main__":
    main(sys.argv[1:])
