"""cofi: submit batches, watch them, run services, run the demo."""

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiokafka.errors import KafkaError
from pydantic_settings import BaseSettings
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from cli.audio import CallLengths

from services.tracker.settings import TrackerSettings
from shared.database_settings import EMBEDDED_DATABASE_URL, DatabaseSettings
from shared.settings import CommonSettings
from shared.settings_env import load_settings
from shared.stages import STAGES

SERVICES = ("distributor", "gpu-stage", "llm-stage", "tracker", "web", "simulator")
S = TypeVar("S", bound=BaseSettings)


class CliError(Exception):
    """A failure the user can act on: one line on stderr, no traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"] and len(args) > 1 and not args[1].startswith("-"):
        _run_service(args[1:])  # the service parses the rest, `--help` included
        return
    if args[:1] == ["check-host"]:
        from cli.check_host import main as check_host  # its own parser, like `run`

        sys.exit(check_host(args[1:]))
    parser = _parser()
    ns = parser.parse_args(args)
    if not getattr(ns, "command", None):
        parser.print_help()
        sys.exit(2)
    # aiokafka logs every failed connection; the user gets one line about it below instead.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        code = ns.func(ns) or 0
    except CliError as exc:
        print(f"cofi {ns.command}: {exc}", file=sys.stderr)
        code = exc.code
    except KafkaError as exc:
        print(
            f"cofi {ns.command}: Kafka failed: {type(exc).__name__}: {_first_line(exc)} "
            "(is KAFKA_BOOTSTRAP_SERVERS right, and the broker up?)",
            file=sys.stderr,
        )
        code = 1
    except DBAPIError as exc:
        print(
            f"cofi {ns.command}: the database failed: {_first_line(exc)} "
            "(is DATABASE_URL the tracker's database, and migrated: cofi migrate?)",
            file=sys.stderr,
        )
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _settings(cls: type[S], ns: argparse.Namespace) -> S:
    return load_settings(cls, f"cofi {ns.command}")


def database_url(ns: argparse.Namespace) -> str:
    """`DATABASE_URL` as the tracker reads it (DatabaseSettings: unset, SQLite ./cofi.db);
    the embedded file must already exist: reading it must not create an empty one."""
    url = _settings(DatabaseSettings, ns).resolved_database_url
    if url == EMBEDDED_DATABASE_URL and not Path("cofi.db").exists():
        raise CliError(
            "DATABASE_URL is unset and there is no ./cofi.db (the tracker's embedded "
            "database); set DATABASE_URL to the tracker's database",
            code=2,
        )
    return url


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
        return number

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cofi", description=__doc__)
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="run a service: distributor, gpu-stage, llm-stage, tracker, web, "
        "simulator (arguments after the name go to the service)",
        description="Run a service in the foreground until SIGTERM. Its settings come from the "
        "environment; `cofi run SERVICE --help` lists its options and settings.",
    )
    p.add_argument(
        "service",
        choices=SERVICES,
        help="the service to run; what follows its name are the service's own options",
    )
    p.set_defaults(func=lambda ns: _run_service([ns.service]))

    p = sub.add_parser("topics", help="create every topic (idempotent)")
    p.set_defaults(func=_topics)

    p = sub.add_parser("submit", help="submit a batch, as the upload system does")
    p.add_argument("batch_id", help="the new batch's id (the Kafka key of its events)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", type=Path, help="a folder of audio files")
    src.add_argument(
        "--synthetic", type=_positive(int), metavar="N", help="make N synthetic WAV files"
    )
    p.add_argument("--corrupt", type=int, default=0, help="of the synthetic files, corrupt ones")
    p.add_argument("--short", type=int, default=0, help="of the synthetic files, short ones")
    _call_length_options(p)
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(".cache/audio"),
        help="where --synthetic writes its files, in a folder per batch (default: %(default)s)",
    )
    p.set_defaults(func=_submit)

    p = sub.add_parser(
        "status",
        help="recent batches, or a batch's per-stage progress (rates, errors, ETA); "
        "--watch redraws until it is finished",
    )
    p.add_argument("batch_id", nargs="?", help="a batch; without one, the recent batches")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    out.add_argument("--watch", action="store_true", help="redraw until the batch is finished")
    p.add_argument("--interval", type=_positive(float), default=2.0, help="seconds between redraws")
    p.add_argument(
        "--limit", type=_positive(int), default=20, help="how many recent batches to list"
    )
    p.set_defaults(func=_status)

    p = sub.add_parser("retry", help="send a batch's dead-lettered files back to their stage")
    p.add_argument("batch_id", help="the batch whose dead letters to send back")
    p.add_argument("--stage", choices=STAGES, help="only files that failed at this stage")
    p.add_argument("--file", help="only this file")
    p.add_argument(
        "--reroute",
        action="store_true",
        help="GPU-stage failures: hand the files to the distributor for another host (they "
        "restart at denoise there) instead of their own host",
    )
    p.set_defaults(func=_retry)

    p = sub.add_parser(
        "drain", help="drain a GPU host: its unfinished files move to other hosts, none go there"
    )
    p.add_argument("host", help="the GPU host, as GPU_HOSTS names it")
    p.add_argument(
        "--reason",
        default="drained by an operator",
        help="why, as the services log it (default: %(default)s)",
    )
    p.add_argument("--undo", action="store_true", help="the host takes files again")
    p.set_defaults(func=_drain)

    p = sub.add_parser(
        "export", help="write a batch's results, one row per file, as CSV or Parquet"
    )
    p.add_argument("batch_id", help="the batch to export")
    p.add_argument(
        "-o", "--output", type=Path, help="the file to write (default: ./<batch>.<format>)"
    )
    p.add_argument(
        "--format",
        choices=("csv", "parquet"),
        help="default: from the output's suffix, else csv",
    )
    p.set_defaults(func=_export)

    p = sub.add_parser("cancel", help="cancel a batch: stages stop starting its files")
    p.add_argument("batch_id", help="the batch to cancel")
    p.add_argument(
        "--reason",
        default="cancelled by an operator",
        help="why, as the tracker records it (default: %(default)s)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="cancel even if the tracker has not seen the batch (yet)",
    )
    p.set_defaults(func=_cancel)

    p = sub.add_parser(
        "contracts",
        help="write docs/asyncapi.yaml and docs/gpu-model-api.{yaml,md} from the code",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a document is stale")
    p.set_defaults(func=_contracts)
    sub.add_parser("check-host", help="hold a GPU host to the model API (cofi check-host -h)")

    p = sub.add_parser(
        "purge",
        help="empty call content older than an age: processing_logs payloads (transcripts, "
        "LLM answers) and dead letters' raw bytes",
    )
    p.add_argument(
        "--older-than", required=True, metavar="AGE", help="an age: 30d, 12h, 90m or 3600s"
    )
    p.add_argument(
        "--delete-batches",
        action="store_true",
        help="delete every row of the batches that ended (Complete or Cancelled) before then",
    )
    p.set_defaults(func=_purge)

    p = sub.add_parser("migrate", help="create or upgrade the tracker's tables")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("demo", help="run one batch through the whole pipeline")
    p.add_argument(
        "--files", type=_positive(int), default=300, help="files in the batch (%(default)s)"
    )
    p.add_argument("--corrupt", type=int, default=5, help="of them, undecodable ones (%(default)s)")
    p.add_argument(
        "--short", type=int, default=5, help="of them, ones under a second (%(default)s)"
    )
    p.add_argument(
        "--timeout",
        type=_positive(float),
        default=600.0,
        help="seconds to wait for the batch to finish (%(default)s)",
    )
    p.add_argument(
        "--latency-scale",
        type=float,
        default=0.05,
        help="multiplies the simulator's model times (1 = a real GPU on real call lengths, "
        "simulator/README.md); 0 answers at once (%(default)s)",
    )
    _call_length_options(p)
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path(".cache/demo"),
        help="where the audio and the services' logs go (%(default)s)",
    )
    p.set_defaults(func=_demo)
    return parser


def _call_length_options(p: argparse.ArgumentParser) -> None:
    from cli.audio import DEFAULT_MEDIAN_S, DEFAULT_SIGMA, MAX_CALL_S

    p.add_argument(
        "--median-s",
        type=_positive(float),
        default=DEFAULT_MEDIAN_S,
        help="synthetic calls: median length in seconds (%(default)s)",
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=DEFAULT_SIGMA,
        help="synthetic calls: lognormal spread, 0 = every call the median (%(default)s)",
    )
    p.add_argument(
        "--max-s",
        type=_positive(float),
        default=MAX_CALL_S,
        help="synthetic calls: longest length in seconds (%(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="synthetic calls: seed of the lengths (%(default)s)"
    )


def _lengths(ns: argparse.Namespace) -> "CallLengths":
    from cli.audio import CallLengths

    try:
        return CallLengths(median_s=ns.median_s, sigma=ns.sigma, cap_s=ns.max_s, seed=ns.seed)
    except ValueError as exc:
        raise CliError(str(exc), code=2) from exc


def _run_service(args: list[str]) -> None:
    from cli.processes import service_argv

    if args[0] not in SERVICES:
        print(
            f"cofi run: unknown service {args[0]!r}; choose from {', '.join(SERVICES)}",
            file=sys.stderr,
        )
        sys.exit(2)
    argv = service_argv(args[0], *args[1:])
    os.execv(argv[0], argv)


def _topics(ns: argparse.Namespace) -> int:
    from shared.provisioning import create_pipeline_topics

    s = _settings(CommonSettings, ns)
    report = asyncio.run(create_pipeline_topics(s))
    plan = s.topic_plan()
    print(
        f"{len(plan)} topics ready for prefix {s.topic_prefix!r} "
        f"({len(report.created)} created, replication factor {s.topic_replication_factor}, "
        f"min.insync.replicas {s.topic_min_insync_replicas})"
    )
    for line in report.drift:
        print(f"drift: {line}", file=sys.stderr)
    if report.drift:
        print(
            f"{len(report.drift)} differences from the plan; nothing was changed "
            "(docs/operations.md, 'Running on your Kafka cluster')",
            file=sys.stderr,
        )
        return 1
    return 0


def _submit(ns: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cli.audio import make_batch
    from cli.upload import submit

    s = _settings(CommonSettings, ns)
    if ns.folder:
        paths = _folder_files(ns.folder)
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    # Drawn only on a terminal: piped, the one line below is the whole output.
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        if not ns.folder:
            made = bar.add_task("making WAV files", total=ns.synthetic)
            paths = make_batch(
                ns.workdir / ns.batch_id,
                ns.synthetic,
                ns.corrupt,
                ns.short,
                _lengths(ns),
                on_file=lambda n: bar.update(made, completed=n),
            )
        sent = bar.add_task(f"submitting {ns.batch_id}", total=len(paths))
        n = asyncio.run(
            submit(
                s.kafka,
                s.topics.uploads,
                ns.batch_id,
                paths,
                on_progress=lambda done: bar.update(sent, completed=done),
            )
        )
    print(f"submitted batch {ns.batch_id}: {n} files, then BatchClosed")
    return 0


def _folder_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise CliError(f"--folder {folder} {what}", code=2)
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    if not paths:
        raise CliError(f"--folder {folder} has no files", code=2)
    return paths


def _status(ns: argparse.Namespace) -> int:
    from cli.status import run

    return run(ns, database_url(ns))


def _retry(ns: argparse.Namespace) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from cli.dead_letters import plan_retry, publish, read_failures

    s = _settings(TrackerSettings, ns)
    url = database_url(ns)

    async def retry() -> int:
        engine = create_async_engine(url)
        try:
            if not await _batch_known(engine, ns.batch_id):
                raise _unknown_batch(ns.batch_id)
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT file FROM fileDistribution WHERE batchId = :b "
                        "AND terminalState IN ('done', 'skipped')"
                    ),
                    {"b": ns.batch_id},
                )
                finished = [r.file for r in rows]
        finally:
            await engine.dispose()
        failures = await read_failures(s.kafka, s.topics.failed)
        plan = plan_retry(
            failures, s.topics, ns.batch_id, ns.stage, ns.file, finished, reroute=ns.reroute
        )
        await publish(s.kafka, plan.outputs)
        for reason in plan.skipped:
            print(f"not retried: {reason}", file=sys.stderr)
        where = "the distributor for another host" if ns.reroute else "their stage"
        print(f"sent {len(plan.outputs)} files of batch {ns.batch_id} back to {where}")
        return 0

    return asyncio.run(retry())


async def _batch_known(engine: "AsyncEngine", batch_id: str) -> bool:
    from sqlalchemy import text

    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT 1 FROM batchStatus WHERE batchId = :b"), {"b": batch_id}
        )
        return found.first() is not None


def _unknown_batch(batch_id: str) -> CliError:
    return CliError(
        f"no batch {batch_id!r} in the tracker's database (cofi status lists the batches it "
        "knows; a batch appears once the tracker has read its first file)"
    )


def _export(ns: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    from cli.export import Format, UnknownBatch, export_batch

    fmt: Format = ns.format or (
        "parquet" if ns.output and ns.output.suffix == ".parquet" else "csv"
    )
    output = ns.output or Path(f"{ns.batch_id}.{fmt}")
    redact = frozenset(_settings(TrackerSettings, ns).payload_redact_fields)
    url = database_url(ns)

    async def export() -> int:
        engine = create_async_engine(url)
        try:
            return await export_batch(engine, ns.batch_id, output, fmt, redact)
        except UnknownBatch as exc:
            raise CliError(str(exc)) from None
        finally:
            await engine.dispose()

    written = asyncio.run(export())
    print(f"wrote {written} files of batch {ns.batch_id} to {output} ({fmt})")
    return 0


def _cancel(ns: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    from cli.dead_letters import cancellation, publish

    s = _settings(TrackerSettings, ns)
    if not ns.force:

        async def known() -> bool:
            engine = create_async_engine(database_url(ns))
            try:
                return await _batch_known(engine, ns.batch_id)
            finally:
                await engine.dispose()

        if not asyncio.run(known()):
            raise CliError(f"{_unknown_batch(ns.batch_id)}; --force cancels it all the same")
    asyncio.run(publish(s.kafka, [cancellation(ns.batch_id, ns.reason, s.topics)]))
    print(f"batch {ns.batch_id} cancelled: stages stop starting its files")
    return 0


def _contracts(ns: argparse.Namespace) -> int:
    from cli.contracts import main as contracts

    return contracts(["--check"] if ns.check else [])


def _purge(ns: argparse.Namespace) -> int:
    from cli.purge import run

    return run(database_url(ns), ns.older_than, ns.delete_batches)


def _drain(ns: argparse.Namespace) -> int:
    from cli.dead_letters import drain, publish

    s = _settings(CommonSettings, ns)
    asyncio.run(publish(s.kafka, [drain(ns.host, not ns.undo, ns.reason, s.topics)]))
    if ns.undo:
        print(f"GPU host {ns.host} takes files again")
    else:
        print(f"GPU host {ns.host} drained: its files move to other hosts, no new file goes there")
    return 0


def _migrate(ns: argparse.Namespace) -> int:
    from services.tracker.migrate import migrate

    asyncio.run(migrate(_settings(DatabaseSettings, ns).resolved_database_url))
    return 0


def _demo(ns: argparse.Namespace) -> int:
    from cli.demo import run_demo
    from cli.pipeline import PipelineConfig
    from cli.processes import exit_on_sigterm

    s = _settings(TrackerSettings, ns)
    config = PipelineConfig(
        bootstrap=s.kafka_bootstrap_servers,
        topic_prefix=s.topic_prefix,
        gpu_hosts=",".join(
            f"{h.ip}:{h.capacity}" + (":down" if h.down else "") for h in s.gpu_hosts
        ),
        database_url=s.resolved_database_url,
        latency_scale=ns.latency_scale,
    )
    exit_on_sigterm()
    ok = asyncio.run(
        run_demo(config, ns.files, ns.corrupt, ns.short, ns.timeout, ns.workdir, _lengths(ns))
    )
    return 0 if ok else 1


if __name__ == "__main__":
    main()
