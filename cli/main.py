"""cofi: submit batches, watch them, run services, run the demo."""

import argparse
import logging
import os
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, NoReturn, cast

from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError

from cli import (
    batch_commands,
    demo_command,
    host_commands,
    retry_command,
    run_command,
    setup_commands,
    submit_command,
)
from cli.errors import CliError, Exit, first_line
from cli.run_command import SERVICES, run_service

if TYPE_CHECKING:
    from cli.options import Subcommands

__all__ = ["COMMANDS", "SERVICES", "main"]

# Every command group, in the order `cofi --help` lists them: each adds its commands. A new
# command is a module with an `add(sub)` and one line here.
COMMANDS: tuple[Callable[["Subcommands"], None], ...] = (
    run_command.add,
    setup_commands.add,
    submit_command.add,
    batch_commands.add,
    retry_command.add,
    host_commands.add,
    demo_command.add,
)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["run"] and len(args) > 1 and not args[1].startswith("-"):
        run_service(args[1:])  # the service parses the rest, `--help` included
        return
    if args[:1] == ["check-host"]:
        from cli.check_host import main as check_host  # its own parser, like `run`

        sys.exit(check_host(args[1:]))
    parser = _parser()
    ns = parser.parse_args(args)
    if not getattr(ns, "command", None):
        parser.print_help()
        sys.exit(Exit.USAGE)
    # The libraries' retries and connection errors would scroll past the one line below that
    # says what failed.
    logging.disable(logging.ERROR)
    sys.exit(_run(ns))


def _run(ns: argparse.Namespace) -> int:
    where = f"cofi {ns.command}"
    try:
        return int(ns.func(ns) or Exit.OK)
    except CliError as exc:
        print(f"{where}: {exc}", file=sys.stderr)
        return exc.code
    except KafkaError as exc:
        print(
            f"{where}: Kafka failed: {type(exc).__name__}: {first_line(exc)} "
            "(is KAFKA_BOOTSTRAP_SERVERS right, and the broker up?)",
            file=sys.stderr,
        )
        return Exit.UNREACHABLE
    except DBAPIError as exc:
        print(
            f"{where}: the database failed: {first_line(exc)} "
            "(is DATABASE_URL the tracker's database, up, and migrated: cofi migrate?)",
            file=sys.stderr,
        )
        return Exit.UNREACHABLE
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except Exception as exc:
        if os.environ.get("COFI_TRACEBACK"):
            raise
        print(
            f"{where}: failed: {type(exc).__name__}: {first_line(exc)} "
            "(COFI_TRACEBACK=1 shows where)",
            file=sys.stderr,
        )
        return Exit.REFUSED


def _version() -> str:
    try:
        return version("cofi")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


class _Parser(argparse.ArgumentParser):
    """A usage error is one line too, naming the command and where its help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(Exit.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cofi",
        description=__doc__,
        epilog="exit status: 0 done; 1 refused (unknown or used batch, drift, stale documents); "
        "2 bad arguments or settings; 3 Kafka or the database unreachable or not ready; "
        "130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"cofi {_version()}")
    sub = cast(
        "Subcommands",
        parser.add_subparsers(dest="command", title="commands", metavar="COMMAND"),
    )
    for add in COMMANDS:
        add(sub)
    return parser


if __name__ == "__main__":
    main()
