"""Run the distributor as a faust worker (graceful stop on SIGTERM)."""

import logging

import faust

from services.distributor.app import create_app
from services.distributor.producer import skip_unprinted_commit_tables
from services.distributor.settings import DistributorSettings
from shared import event_loop
from shared.logging import configure_logging
from shared.runtime.heap import keep_large_buffers_out_of_the_heap
from shared.settings_env import load_settings, service_parser

DESCRIPTION = (
    "The distributor: assigns each uploaded file a GPU host and applies the triage rules; "
    "stops on SIGTERM."
)


def main(argv: list[str] | None = None) -> None:
    """`cofi run distributor` (no options: everything is a setting)."""
    service_parser("cofi run distributor", DESCRIPTION, DistributorSettings).parse_args(argv)
    keep_large_buffers_out_of_the_heap()
    settings = load_settings(DistributorSettings, "cofi run distributor")
    configure_logging(settings.log_level, settings.log_json, service="distributor")
    # Before the app and its worker make their loop: faust runs on the loop this installs.
    event_loop.install()
    skip_unprinted_commit_tables()
    app = create_app(settings)
    # Keep our JSON log lines: left to itself, faust's worker replaces the root logger's
    # handlers with its own plain-text ones when it starts.
    worker = faust.Worker(app, loglevel=logging.WARNING, quiet=True, override_logging=False)
    worker.spinner = None  # its terminal escapes would break the one-JSON-object-per-line log
    worker.execute_from_commandline()
