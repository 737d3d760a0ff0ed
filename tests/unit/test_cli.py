"""`cofi` as a new user meets it: run as a subprocess, checking exit codes and output.

Nothing here needs Kafka or MariaDB: every command below fails (or prints its help) before it
would reach them, and the database, where one is read, is an embedded SQLite file.
"""

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cli.main import SERVICES, _parser
from services.tracker.migrate import migrate

ROOT = Path(__file__).resolve().parents[2]
# A broker address nothing listens on: a command that tried Kafka would hang or fail there.
NO_BROKER = "127.0.0.1:1"
SERVICE_MAINS = ("distributor", "gpu-stage", "llm-stage", "tracker", "web")


def cofi(
    *args: str, cwd: Path | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "GPU_HOSTS", "TOPIC_PREFIX", "WEB_AUTH_USER")
    }
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={
            **base,
            "PYTHONPATH": str(ROOT),
            "KAFKA_BOOTSTRAP_SERVERS": NO_BROKER,
            "COLUMNS": "120",
            **env,
        },
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with `code` and exactly one line on stderr holding `words`."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("service", SERVICES)
def test_run_service_help_prints_its_options_and_starts_nothing(
    service: str, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    # Settings a started service would act on: a port it would bind, a broker it would wait on.
    done = cofi("run", service, "--help", cwd=tmp_path, WEB_PORT="1", METRICS_PORT="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: cofi run {service}")
    assert "-h, --help" in done.stdout and done.stderr == ""
    assert time.monotonic() - t0 < 30  # printed and left: a started service would stay
    if service != "simulator":
        # Its settings, with their defaults.
        assert re.search(r"^  KAFKA_BOOTSTRAP_SERVERS +127\.0\.0\.1:9092$", done.stdout, re.M)
        assert "GPU_HOSTS" in done.stdout and "docs/configuration.md" in done.stdout
    assert not list(tmp_path.iterdir())  # no database file, no logs: nothing ran


def test_service_specific_options_and_settings_are_in_their_help() -> None:
    assert "--stage" in cofi("run", "gpu-stage", "--help").stdout
    assert "GPU_REQUEST_TIMEOUT_S" in cofi("run", "gpu-stage", "--help").stdout
    assert "LLM_API_URL" in cofi("run", "llm-stage", "--help").stdout
    assert "{run,migrate}" in cofi("run", "tracker", "--help").stdout
    web = cofi("run", "web", "--help").stdout
    assert "WEB_AUTH_USER" in web and "WEB_DATABASE_URL" in web


def test_run_without_a_known_service_says_which_exist() -> None:
    line = one_line_error(cofi("run", "distributer"), 2, "unknown service 'distributer'")
    assert "distributor" in line
    missing = cofi("run")
    assert missing.returncode == 2 and "service" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_submit_of_a_missing_or_empty_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    one_line_error(cofi("submit", "b1", "--folder", str(tmp_path / "nope")), 2, "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "sub").mkdir()  # folders are not files
    one_line_error(cofi("submit", "b1", "--folder", str(empty)), 2, str(empty), "no files")
    file = tmp_path / "a.wav"
    file.write_bytes(b"")
    one_line_error(cofi("submit", "b1", "--folder", str(file)), 2, "is not a folder")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("GPU_HOSTS", "127.0.0.2:four", "capacity 'four' is not a number"),
        ("GPU_HOSTS", "127.0.0.2:4:up", "may only be 'down'"),
        ("GPU_HOSTS", "127.0.0.2,127.0.0.2", "lists a host twice"),
        ("TOPIC_PREFIX", "my prefix", "should match pattern"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable_in_the_cli(
    variable: str, value: str, says: str, tmp_path: Path
) -> None:
    for args in (("topics",), ("submit", "b1", "--folder", str(ROOT / "docs"))):
        setting: dict[str, Any] = {variable: value}  # an environment variable, not cwd/timeout
        done = cofi(*args, **setting)
        line = one_line_error(done, 2, f"bad setting {variable}", says)
        assert line.startswith(f"cofi {args[0]}: ")


@pytest.mark.parametrize("service", SERVICE_MAINS)
def test_a_bad_setting_is_one_line_naming_the_variable_in_each_service(service: str) -> None:
    bad_hosts = cofi("run", service, GPU_HOSTS="127.0.0.2:x")
    one_line_error(bad_hosts, 2, f"cofi run {service}: bad setting GPU_HOSTS")
    bad_prefix = cofi("run", service, TOPIC_PREFIX="a/b")
    one_line_error(bad_prefix, 2, f"cofi run {service}: bad setting TOPIC_PREFIX")


def test_the_pages_auth_settings_come_in_pairs() -> None:
    one_line_error(cofi("run", "web", WEB_AUTH_USER="sre"), 2, "WEB_AUTH_PASSWORD")


def test_retry_with_an_unknown_stage_lists_the_stages() -> None:
    line = one_line_error(cofi("retry", "b1", "--stage", "llm3"), 2, "invalid choice: 'llm3'")
    assert "denoise" in line


@pytest.mark.parametrize(
    "args", [("status",), ("status", "b1", "--watch"), ("cancel", "b1"), ("retry", "b1")]
)
def test_without_a_database_the_commands_say_so_and_create_none(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    one_line_error(cofi(*args, cwd=tmp_path), 2, "DATABASE_URL is unset", "cofi.db")
    assert not (tmp_path / "cofi.db").exists()


@pytest.fixture(scope="module")
def tracker_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty, migrated tracker database (SQLite), as the tracker leaves it before a batch."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'cofi.db'}"
    asyncio.run(migrate(url))
    return url


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("status", "b-unknown", "--watch", "--interval", "0.1"), 1),
        (("status", "b-unknown"), 1),
        (("cancel", "b-unknown"), 1),
        (("retry", "b-unknown"), 1),
    ],
)
def test_an_unknown_batch_is_an_error_not_a_wait(
    args: tuple[str, ...], code: int, tracker_db: str
) -> None:
    done = cofi(*args, DATABASE_URL=tracker_db, timeout=30)
    line = one_line_error(done, code, "no batch 'b-unknown'")
    if args[0] == "cancel":
        assert "--force" in line


def test_a_database_without_the_tracker_tables_is_one_line_and_exit_3(tmp_path: Path) -> None:
    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    for args in (("status",), ("status", "b1"), ("cancel", "b1"), ("retry", "b1")):
        one_line_error(cofi(*args, DATABASE_URL=empty), 3, "batchStatus", "cofi migrate")


def test_an_unreachable_database_is_one_line_and_exit_3() -> None:
    done = cofi("status", DATABASE_URL=f"mysql+asyncmy://cofi@{NO_BROKER}/cofi")
    one_line_error(done, 3, "the database failed", "Can't connect")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite:///cofi.db", "write sqlite+aiosqlite:///"),
        ("mysql://cofi:secret@127.0.0.1/cofi", "write mysql+asyncmy://"),
        ("notaurl", "is not a database URL"),
    ],
)
@pytest.mark.parametrize("command", [("status",), ("submit", "b1", "--synthetic", "1")])
def test_a_database_url_cofi_cannot_use_is_one_line_and_exit_2(
    url: str, says: str, command: tuple[str, ...], tmp_path: Path
) -> None:
    line = one_line_error(cofi(*command, cwd=tmp_path, DATABASE_URL=url), 2, "DATABASE_URL", says)
    assert "secret" not in line
    assert not list(tmp_path.iterdir())  # no database file, no audio: nothing ran


def test_cancel_force_skips_the_check_and_goes_to_kafka(tracker_db: str) -> None:
    # Past the check, it publishes: with no broker that is a Kafka error, in one line.
    done = cofi("cancel", "b-unknown", "--force", DATABASE_URL=tracker_db, timeout=120)
    one_line_error(done, 3, "cofi cancel: Kafka failed", "KAFKA_BOOTSTRAP_SERVERS")


def test_drain_of_an_empty_or_unknown_host_is_refused_before_kafka() -> None:
    one_line_error(cofi("drain", ""), 2, "cofi drain: argument host: must not be empty")
    # With no broker, a drain that went on to publish would exit 3.
    line = one_line_error(
        cofi("drain", "gpu-bb", GPU_HOSTS="gpu-a:4,gpu-b:4"), 2, "no host 'gpu-bb'", "gpu-a, gpu-b"
    )
    assert "nothing was sent" in line


def test_version_names_the_package_version() -> None:
    done = cofi("--version")
    assert done.returncode == 0 and re.fullmatch(r"cofi \d+\.\d+\.\d+\S*\n", done.stdout)


def test_topics_without_a_broker_fails_within_10_seconds_in_one_line() -> None:
    t0 = time.monotonic()
    done = cofi("topics")  # NO_BROKER: a closed port
    assert time.monotonic() - t0 < 10
    one_line_error(done, 3, "cofi topics: no Kafka broker answered at 127.0.0.1:1")


def test_a_usage_error_is_one_line_and_exit_2() -> None:
    one_line_error(cofi("status", "--interval", "0"), 2, "--interval", "must be more than 0")
    one_line_error(cofi("submit", "b1"), 2, "one of the arguments --folder --synthetic")


@pytest.mark.parametrize("command", ["status", "retry", "cancel", "drain"])
def test_the_operator_commands_print_json_on_request(command: str) -> None:
    args = [command] if command == "status" else [command, "x"]
    assert _parser().parse_args([*args, "--json"]).json is True


def _actions(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((f"{path} {name}", argparse.Action([], name, help=helps.get(name))))
                found += _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            found.append((f"{path} {'/'.join(action.option_strings) or action.dest}", action))
    return found


def test_every_command_and_option_has_help() -> None:
    actions = _actions(_parser(), "cofi")
    names = {name for name, _ in actions}
    assert {"cofi submit", "cofi submit --folder", "cofi run service", "cofi demo --files"} <= names
    missing = [name for name, action in actions if not (action.help or "").strip()]
    assert not missing, f"no help text: {missing}"
