"""Every service's main runs on asyncio's loop, and on uvloop only on request
(shared/event_loop.py says why)."""

import asyncio

import pytest
import uvloop

from shared import event_loop


async def loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_the_standard_loop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(event_loop.ENV, raising=False)
    assert event_loop.loop_factory({}) is asyncio.new_event_loop
    assert not issubclass(event_loop.run(loop_type()), uvloop.Loop)


def test_uvloop_on_request() -> None:
    assert event_loop.loop_factory({event_loop.ENV: "uvloop"}) is uvloop.new_event_loop


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="COFI_EVENT_LOOP"):
        event_loop.loop_factory({event_loop.ENV: "trio"})


def test_install_makes_new_loops_uvloop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.ENV, "uvloop")
    before = asyncio.get_event_loop_policy()
    try:
        event_loop.install()
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop, uvloop.Loop)
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(before)
