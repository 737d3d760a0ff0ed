"""Graceful stop on SIGTERM/SIGINT for long-running consumers."""

import asyncio
import signal


def stop_event_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
