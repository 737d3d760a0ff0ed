"""`cofi drain HOST [--undo]`: take a GPU host out of the fleet, or back in; and
`cofi check-host` in the command list."""

import argparse
import asyncio
import json
from typing import TYPE_CHECKING

from cli.errors import CliError, Exit
from cli.options import json_option, non_empty, settings
from shared.settings import CommonSettings

if TYPE_CHECKING:
    from cli.options import Subcommands


def add(sub: "Subcommands") -> None:
    p = sub.add_parser(
        "drain", help="drain a GPU host: its unfinished files move to other hosts, none go there"
    )
    p.add_argument("host", type=non_empty, help="the GPU host, as GPU_HOSTS names it")
    p.add_argument(
        "--reason",
        default="drained by an operator",
        help="why, as the services log it (default: %(default)s)",
    )
    p.add_argument("--undo", action="store_true", help="the host takes files again")
    json_option(p)
    p.set_defaults(func=drain)
    # `cofi check-host ...` goes to cli/check_host.py before parsing (it has its own parser):
    # listed here for `cofi --help`.
    sub.add_parser("check-host", help="hold a GPU host to the model API (cofi check-host -h)")


def drain(ns: argparse.Namespace) -> int:
    from cli.dead_letters import drain, publish

    s = settings(CommonSettings, ns)
    # The control topic is compacted: a drain of a mistyped host would be kept for good.
    if ns.host not in s.host_ips:
        raise CliError(
            f"GPU_HOSTS has no host {ns.host!r} (it lists {', '.join(s.host_ips)}); nothing "
            "was sent: give the host as GPU_HOSTS names it, with GPU_HOSTS as the services have it",
            code=Exit.USAGE,
        )
    asyncio.run(publish(s.kafka, [drain(ns.host, not ns.undo, ns.reason, s.topics)]))
    if ns.json:
        print(json.dumps({"host": ns.host, "drained": not ns.undo, "reason": ns.reason}))
    elif ns.undo:
        print(f"GPU host {ns.host} takes files again")
    else:
        print(f"GPU host {ns.host} drained: its files move to other hosts, no new file goes there")
    return Exit.OK
