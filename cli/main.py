"""cofi: submit batches, watch them, run services, run the demo."""

import argparse
import asyncio
import os
import sys
from pathlib import Path

from shared.settings import CommonSettings

DEFAULT_DB = "mysql+asyncmy://cofi:cofi@127.0.0.1:3306/cofi"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"]:
        _run_service(args[1:])
        return
    parser = _parser()
    ns = parser.parse_args(args)
    if not getattr(ns, "command", None):
        parser.print_help()
        sys.exit(2)
    sys.exit(ns.func(ns) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cofi", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser(
        "run",
        help="run a service: distributor, gpu-stage, llm-stage, tracker, web, "
        "simulator (arguments after the name go to the service)",
    )
    p.add_argument("service")

    p = sub.add_parser("topics", help="create every topic (idempotent)")
    p.set_defaults(func=_topics)

    p = sub.add_parser("submit", help="submit a batch, as the upload system does")
    p.add_argument("batch_id")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", type=Path, help="a folder of audio files")
    src.add_argument("--synthetic", type=int, metavar="N", help="make N synthetic WAV files")
    p.add_argument("--corrupt", type=int, default=0, help="of the synthetic files, corrupt ones")
    p.add_argument("--short", type=int, default=0, help="of the synthetic files, short ones")
    p.add_argument("--workdir", type=Path, default=Path(".cache/audio"))
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
    p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws")
    p.add_argument("--limit", type=int, default=20, help="how many recent batches to list")
    p.set_defaults(func=_status)

    p = sub.add_parser("retry", help="send a batch's dead-lettered files back to their stage")
    p.add_argument("batch_id")
    p.add_argument("--stage", help="only files that failed at this stage")
    p.add_argument("--file", help="only this file")
    p.set_defaults(func=_retry)

    p = sub.add_parser("cancel", help="cancel a batch: stages stop starting its files")
    p.add_argument("batch_id")
    p.add_argument("--reason", default="cancelled by an operator")
    p.set_defaults(func=_cancel)

    p = sub.add_parser("migrate", help="create or upgrade the tracker's tables")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("demo", help="run one batch through the whole pipeline")
    p.add_argument("--files", type=int, default=300)
    p.add_argument("--corrupt", type=int, default=5)
    p.add_argument("--short", type=int, default=5)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--latency-scale", type=float, default=0.25)
    p.add_argument("--workdir", type=Path, default=Path(".cache/demo"))
    p.set_defaults(func=_demo)
    return parser


def _run_service(args: list[str]) -> None:
    if not args:
        sys.exit("usage: cofi run {distributor,gpu-stage,llm-stage,tracker,web,simulator} [args]")
    from cli.processes import service_argv

    try:
        argv = service_argv(args[0], *args[1:])
    except KeyError:
        sys.exit(f"unknown service {args[0]!r}")
    os.execv(argv[0], argv)


def _topics(ns: argparse.Namespace) -> int:
    from shared.provisioning import create_pipeline_topics

    s = CommonSettings()
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
    from cli.audio import make_batch
    from cli.upload import submit

    s = CommonSettings()
    if ns.folder:
        paths = sorted(p for p in ns.folder.iterdir() if p.is_file())
    else:
        paths = make_batch(ns.workdir / ns.batch_id, ns.synthetic, ns.corrupt, ns.short)
    n = asyncio.run(submit(s.kafka, s.topics.uploads, ns.batch_id, paths))
    print(f"submitted batch {ns.batch_id}: {n} files, then BatchClosed")
    return 0


def _status(ns: argparse.Namespace) -> int:
    from cli.status import run

    return run(ns, DEFAULT_DB)


def _retry(ns: argparse.Namespace) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from cli.dead_letters import plan_retry, publish, read_failures

    s = CommonSettings()

    async def retry() -> int:
        engine = create_async_engine(os.environ.get("DATABASE_URL", DEFAULT_DB))
        try:
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
        plan = plan_retry(failures, s.topics, ns.batch_id, ns.stage, ns.file, finished)
        await publish(s.kafka, plan.outputs)
        for reason in plan.skipped:
            print(f"not retried: {reason}", file=sys.stderr)
        print(f"sent {len(plan.outputs)} files of batch {ns.batch_id} back to their stage")
        return 0

    return asyncio.run(retry())


def _cancel(ns: argparse.Namespace) -> int:
    from cli.dead_letters import cancellation, publish

    s = CommonSettings()
    asyncio.run(publish(s.kafka, [cancellation(ns.batch_id, ns.reason, s.topics)]))
    print(f"batch {ns.batch_id} cancelled: stages stop starting its files")
    return 0


def _migrate(ns: argparse.Namespace) -> int:
    from services.tracker.migrate import migrate

    asyncio.run(migrate(os.environ.get("DATABASE_URL", DEFAULT_DB)))
    return 0


def _demo(ns: argparse.Namespace) -> int:
    from cli.demo import run_demo
    from cli.pipeline import PipelineConfig
    from cli.processes import exit_on_sigterm

    config = PipelineConfig(
        bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        topic_prefix=os.environ.get("TOPIC_PREFIX", "cofi"),
        gpu_hosts=os.environ.get("GPU_HOSTS", "127.0.0.2:4,127.0.0.3:4"),
        database_url=os.environ.get("DATABASE_URL", DEFAULT_DB),
        latency_scale=ns.latency_scale,
    )
    exit_on_sigterm()
    ok = asyncio.run(run_demo(config, ns.files, ns.corrupt, ns.short, ns.timeout, ns.workdir))
    return 0 if ok else 1


if __name__ == "__main__":
    main()
