"""Issue 21's figure 3: the pipeline written plainly on faust, a fair peer for cofi's CPU.

The bare chain (`bench.model_chain`) is a floor, not a peer: it validates nothing and tracks
nothing. This peer does what a team would write on faust in a week, equally safe:
- the same topics, process layout, simulator and model calls as the chain (`ChainConfig`);
- one faust app per process (one consumer over its hops' topics), an agent per hop with
  concurrency equal to its slots (a GPU host's capacity per stage; the LLM stage's
  concurrency, shared by its two hops as cofi's is);
- pydantic events, decoded and validated on the way in and built on the way out, each
  hop's answer carried in the event as cofi's context carries it;
- an event is acknowledged only after the broker acknowledged its output (faust then commits
  below the lowest unacknowledged offset);
- a plain tracker: one aiokafka consumer over every topic, per poll one `executemany` into a
  log table (idempotent: topic, partition and offset are its key) and one into a file-state
  table, the database's commit before the offsets'.
No retries, dead letters, host health or metrics: a call that does not answer 200 stops the
process (and the bench with it).

`python -m bench.faust_peer ROLE CONFIG_JSON` runs one process until SIGTERM.
"""

import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
import asyncmy
import faust
from pydantic import BaseModel, Field
from sqlalchemy.engine import make_url

from bench.model_chain import (
    GPU_HOPS,
    LLM_HOPS,
    LLM_MODEL,
    STT_LANGUAGES,
    ChainConfig,
    host_for,
    roles,
)
from shared import event_loop
from shared.kafka import make_consumer
from shared.pipeline import input_topic, output_topic, spec
from shared.runtime.lifecycle import stop_event_on_signals
from shared.topics import Topics

TRACKER = "tracker"
LOG_TABLE = "peer_processing_log"
STATE_TABLE = "peer_file_state"
TABLES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {LOG_TABLE} (topic VARCHAR(255) NOT NULL, "
    "part INT NOT NULL, off BIGINT NOT NULL, batch_id VARCHAR(128) NOT NULL, "
    "file_name VARCHAR(255) NOT NULL, stage VARCHAR(32) NOT NULL, "
    "PRIMARY KEY (topic, part, off))",
    f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (batch_id VARCHAR(128) NOT NULL, "
    "file_name VARCHAR(255) NOT NULL, stage VARCHAR(32) NOT NULL, "
    "PRIMARY KEY (batch_id, file_name))",
)


class PeerEvent(BaseModel):
    """A file on its way: who it is, where it runs, and what each hop answered."""

    batch_id: str = Field(min_length=1)
    file_name: str = Field(min_length=1)
    audio_uri: str
    stage: str  # the hop that produced this event ("upload" for the upload system)
    host: str | None = None
    answers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def skips_stt(self) -> bool:
        ivr, lid = self.answers.get("ivr", {}), self.answers.get("lid", {})
        return bool(ivr.get("is_ivr")) or str(lid.get("language")).encode() not in STT_LANGUAGES


@dataclass(frozen=True)
class PeerConfig:
    chain: ChainConfig
    database_url: str  # mysql+asyncmy://...

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> "PeerConfig":
        data = json.loads(raw)
        return cls(ChainConfig(**data["chain"]), data["database_url"])


def peer_roles(hosts: Sequence[str]) -> list[str]:
    """The chain's processes, and the tracker."""
    return [*roles(hosts), TRACKER]


def request_for(stage: str, event: PeerEvent, llm_model: str) -> dict[str, Any]:
    if stage in GPU_HOPS:
        language = event.answers.get("lid", {}).get("language")
        inputs = {"language": language} if stage == "stt" and language else {}
        return {
            "batch_id": event.batch_id,
            "file_name": event.file_name,
            "audio_uri": event.audio_uri,
            "inputs": inputs,
        }
    transcript = event.answers.get("stt", {}).get("transcript", "")
    prompt = f"{stage}: Return JSON with keys: summary\n{transcript}"
    return {
        "model": llm_model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "user": f"{event.batch_id}/{event.file_name}",
    }


class PeerProcess:
    """One faust app: an agent per hop of this process's role."""

    def __init__(self, config: ChainConfig, role: str) -> None:
        self.config, self.role = config, role
        self.topics = Topics(config.prefix)
        self.app = faust.App(
            f"{config.prefix}-peer-{role}",
            broker=f"kafka://{config.bootstrap}",
            store="memory://",
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            topic_allow_declare=False,
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
        )
        self.session: aiohttp.ClientSession | None = None
        self.outputs: dict[str, Any] = {}
        self.llm_slots = asyncio.Semaphore(config.llm_concurrency)
        for stage, host in roles(config.hosts)[role]:
            self._agent(stage, host)

    def _agent(self, stage: str, host: str | None) -> None:
        source = self.app.topic(input_topic(stage, self.topics, host))
        slots = (
            self.config.capacity
            if stage in GPU_HOPS
            else self.config.llm_concurrency
            if stage in LLM_HOPS
            else 1
        )

        async def hop(stream: Any) -> None:
            async for key, value in stream.items():
                event = PeerEvent.model_validate_json(value)
                out = await self.step(stage, host, event)
                target = self._next_topic(stage, out)
                sent = await self.topic(target).send(key=key, value=out.model_dump_json().encode())
                await sent  # the broker's ack before faust acknowledges the input

        hop.__name__ = f"{stage}_{host or 'all'}".replace(".", "_")
        self.app.agent(source, name=hop.__name__, concurrency=slots)(hop)

    def topic(self, name: str) -> Any:
        if name not in self.outputs:
            self.outputs[name] = self.app.topic(name)
        return self.outputs[name]

    def _next_topic(self, stage: str, event: PeerEvent) -> str:
        route = ("skip" if event.skips_stt else "stt") if spec(stage).routes else None
        return output_topic(stage, self.topics, event.host, route)

    async def step(self, stage: str, host: str | None, event: PeerEvent) -> PeerEvent:
        update: dict[str, Any] = {"stage": stage}
        if stage == "distribute":
            key = f"{event.batch_id}/{event.file_name}".encode()
            update["host"] = host_for(key, self.config.hosts)
        elif stage in GPU_HOPS:
            url = f"http://{host}:{self.config.gpu_ports[stage]}/v1/{stage}"
            update["answers"] = event.answers | {stage: await self.call(stage, url, event)}
        elif stage in LLM_HOPS:
            async with self.llm_slots:
                answer = await self.call(stage, self.config.llm_url, event)
            content = answer["choices"][0]["message"]["content"]
            update["answers"] = event.answers | {stage: {"content": content}}
        return event.model_copy(update=update)

    async def call(self, stage: str, url: str, event: PeerEvent) -> dict[str, Any]:
        if self.session is None:
            self.session = aiohttp.ClientSession()
        body = request_for(stage, event, LLM_MODEL)
        async with self.session.post(url, json=body) as response:
            if response.status != 200:
                raise RuntimeError(
                    f"{stage} {event.file_name}: {url} answered {response.status}: "
                    f"{(await response.text())[:300]}"
                )
            answer: dict[str, Any] = await response.json()
        return answer

    def run(self) -> None:
        worker = faust.Worker(self.app, loglevel=logging.WARNING, quiet=True)
        worker.spinner = None
        worker.execute_from_commandline()


async def connect(database_url: str) -> Any:
    url = make_url(database_url)
    return await asyncmy.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password,
        database=url.database,
    )


async def create_tables(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        async with conn.cursor() as cursor:
            for ddl in TABLES_DDL:
                await cursor.execute(ddl)
        await conn.commit()
    finally:
        conn.close()


async def run_tracker(config: PeerConfig) -> None:
    """One consumer over every topic; per poll, two `executemany` and a commit each side."""
    chain = config.chain
    stop = stop_event_on_signals()
    consumer = make_consumer(chain.bootstrap, f"{chain.prefix}-peer-tracker", "peer-tracker")
    consumer.subscribe(chain.topics())
    conn = await connect(config.database_url)
    await consumer.start()
    log_sql = (
        f"INSERT IGNORE INTO {LOG_TABLE} (topic, part, off, batch_id, file_name, stage) "
        "VALUES (%s, %s, %s, %s, %s, %s)"
    )
    state_sql = (
        f"INSERT INTO {STATE_TABLE} (batch_id, file_name, stage) VALUES (%s, %s, %s) "
        # A poll's events of one file come in topic order, not flow order: done stays done.
        "ON DUPLICATE KEY UPDATE stage = IF(stage = 'done', stage, VALUES(stage))"
    )
    try:
        while not stop.is_set():
            polled = await consumer.getmany(timeout_ms=500, max_records=2000)
            records = [r for rs in polled.values() for r in rs]
            if not records:
                continue
            events = [(r, PeerEvent.model_validate_json(r.value or b"")) for r in records]
            done = Topics(chain.prefix).done
            stage_of = {r.topic: ("done" if r.topic == done else e.stage) for r, e in events}
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    log_sql,
                    [
                        (r.topic, r.partition, r.offset, e.batch_id, e.file_name, e.stage)
                        for r, e in events
                    ],
                )
                await cursor.executemany(
                    state_sql, [(e.batch_id, e.file_name, stage_of[r.topic]) for r, e in events]
                )
            await conn.commit()
            await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in polled.items() if rs})
    finally:
        await consumer.stop()
        conn.close()


def main(argv: Sequence[str]) -> None:
    role, raw = argv
    config = PeerConfig.from_json(raw)
    if role == TRACKER:
        event_loop.run(run_tracker(config))
    else:
        event_loop.install()
        PeerProcess(config.chain, role).run()


if __name__ == "__main__":
    main(sys.argv[1:])
