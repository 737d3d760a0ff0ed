"""Run the distributor as a faust worker (graceful stop on SIGTERM)."""

import logging

import faust

from services.distributor.app import create_app
from services.distributor.settings import DistributorSettings
from shared.logging import configure_logging


def main(argv: list[str] | None = None) -> None:
    settings = DistributorSettings()
    configure_logging(settings.log_level, settings.log_json, service="distributor")
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=logging.WARNING, quiet=True)
    # Keep our JSON log format; faust's worker would install its own handlers otherwise.
    configure_logging(settings.log_level, settings.log_json, service="distributor")
    worker.execute_from_commandline()
