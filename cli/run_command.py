"""`cofi run SERVICE [args]`: run a service in the foreground (it parses its own arguments)."""

import os
import sys
from typing import TYPE_CHECKING

from cli.errors import Exit

if TYPE_CHECKING:
    from cli.options import Subcommands

SERVICES = ("distributor", "gpu-stage", "llm-stage", "tracker", "web", "simulator")


def add(sub: "Subcommands") -> None:
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
    p.set_defaults(func=lambda ns: run_service([ns.service]))


def run_service(args: list[str]) -> None:
    """Replace this process with the service's (`main` routes `cofi run NAME ...` here before
    parsing, so that the service parses the rest, `--help` included)."""
    from cli.processes import service_argv

    if args[0] not in SERVICES:
        print(
            f"cofi run: unknown service {args[0]!r}; choose from {', '.join(SERVICES)}",
            file=sys.stderr,
        )
        sys.exit(Exit.USAGE)
    argv = service_argv(args[0], *args[1:])
    os.execv(argv[0], argv)
