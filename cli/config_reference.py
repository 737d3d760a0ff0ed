"""Write docs/configuration.md from the settings classes (every knob is an environment variable).

    python -m cli.config_reference            # rewrite the file
    python -m cli.config_reference --check    # exit 1 when the file is stale

A field's text is its `Field(description=...)`; `FALLBACK` holds the texts of fields that have
none yet (a test fails when a new setting has neither).
"""

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from services.dashboard.settings import WebSettings
from services.distributor.settings import DistributorSettings
from services.gpu_stage.settings import GpuStageSettings
from services.llm_stage.settings import LlmStageSettings
from services.tracker.settings import TrackerSettings
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parent.parent
PATH = ROOT / "docs" / "configuration.md"

# (title, settings class, the `cofi run` name); a class lists only what it adds to the common.
SECTIONS: tuple[tuple[str, type[BaseSettings], str], ...] = (
    ("Every service", CommonSettings, "all"),
    ("Distributor", DistributorSettings, "distributor"),
    ("GPU stages", GpuStageSettings, "gpu-stage"),
    ("LLM stages", LlmStageSettings, "llm-stage"),
    ("Tracker", TrackerSettings, "tracker"),
    ("Progress page", WebSettings, "web"),
)

FALLBACK: dict[str, str] = {
    "kafka_bootstrap_servers": "Kafka brokers, `host:port[,host:port…]`",
    "kafka_security_protocol": "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`, for every "
    "Kafka client of every service and of the CLI",
    "kafka_sasl_username": "SASL user (with a `SASL_*` protocol)",
    "kafka_sasl_password": "SASL password (secret; with a `SASL_*` protocol)",
    "kafka_ssl_check_hostname": "Check that a broker's certificate names the host connected to",
    "topic_prefix": "First part of every topic and consumer group name (`<prefix>.uploads`, …)",
    "gpu_hosts": "GPU hosts as `ip:capacity[:down]`, comma-separated; `down` drains a host "
    "(the distributor sends it no new files)",
    "denoise_port": "Port of the denoise model API on every GPU host",
    "ivr_port": "Port of the IVR model API on every GPU host",
    "lid_port": "Port of the language-ID model API on every GPU host",
    "stt_port": "Port of the speech-to-text model API on every GPU host",
    "log_level": "Logging level (`DEBUG`, `INFO`, `WARNING`, …)",
    "log_json": "One JSON object per log line (batch, file, stage, host, attempt as fields)",
    "triage_rules_path": "JSON file of triage rules (the first matching rule skips the file)",
    "distributor_commit_interval_s": "How often the distributor commits its consumed offsets",
    "gpu_request_timeout_s": "Timeout of one model API request",
    "gpu_retry_max_attempts": "Attempts per file and stage before it fails (transient errors)",
    "gpu_retry_base_delay_s": "First retry delay; doubles per attempt, with full jitter",
    "gpu_retry_max_delay_s": "Longest delay between two attempts",
    "gpu_retry_budget_s": "Time budget of all attempts of one file at one stage",
    "gpu_host_failover_deadline_s": "A host down (circuit open) this long is dead: its "
    "consumers fail its files over to other hosts instead of waiting",
    "gpu_probe_max_delay_s": "Longest delay between two probes of a down GPU host",
    "llm_api_url": "Base URL of the OpenAI-compatible API (`…/v1`)",
    "llm_api_key": "Bearer token for the LLM API (empty: none sent)",
    "llm_model": "Model name sent in each chat completion request",
    "llm_timeout_s": "Timeout of one LLM request",
    "llm_retry_max_attempts": "Attempts per file and LLM stage before it fails",
    "llm_retry_base_delay_s": "First retry delay; doubles per attempt, with full jitter",
    "llm_retry_max_delay_s": "Longest delay between two attempts",
    "llm_retry_budget_s": "Time budget of all attempts of one file at one LLM stage",
    "llm_probe_max_delay_s": "Longest delay between two probes of a broken LLM API",
    "llm_prompts_dir": "Folder of the prompt templates `llm1.txt`, `llm2.txt`",
    "database_url": "SQLAlchemy URL of the tracker's database, e.g. "
    "`mysql+asyncmy://user:pass@host:3306/cofi`; unset: SQLite `./cofi.db`",
    "progress_update_interval": "A `stage_progress` row in batchExecutionLog every N files",
    "log_file_start_events": "Also log `file_start` rows in batchExecutionLog",
    "tracker_max_batch": "Most records applied in one database transaction",
    "tracker_group_id": "Consumer group of the tracker; empty: `<TOPIC_PREFIX>-tracker`",
    "tracker_migrate": "Apply the schema migrations at startup (turn off where a separate "
    "`cofi migrate` step runs)",
    "database_wait_s": "How long startup waits for the database to answer",
    "tracker_kill_after_polls": "Test hook: SIGKILL after the N-th poll's database commit, "
    "before its offset commit; 0 turns it off",
}

# The simulator (not part of the product) reads these, besides the GPU ports above.
SIMULATOR: tuple[tuple[str, str, str], ...] = (
    ("SIM_HOSTS", "GPU_HOSTS", "Addresses to serve as GPU hosts, `ip[:capacity]`, comma-separated"),
    ("SIM_CONFIG", "", "JSON file of simulator settings (env and options override it)"),
    ("SIM_LLM_PORT", "8000", "Port of the simulated LLM API"),
    ("SIM_CONTROL_PORT", "5099", "Port of the control API (faults, outages, stats)"),
    (
        "SIM_LATENCY_SCALE",
        "1.0",
        "Multiplies every simulated latency (1 = a real GPU on real call lengths: "
        "[model times](../simulator/README.md)); 0 answers at once",
    ),
    ("SIM_ERROR_RATE", "0.0", "Probability of a GPU 503"),
    ("SIM_TIMEOUT_RATE", "0.0", "Probability of a GPU request that hangs, then 504"),
    ("IVR_RATE", "0.05", "Share of calls flagged IVR"),
    ("SIM_SEED", "", "Seeds the fault dice"),
)


def own_fields(cls: type[BaseSettings]) -> dict[str, FieldInfo]:
    if cls is CommonSettings:
        return dict(cls.model_fields)
    return {n: f for n, f in cls.model_fields.items() if n not in CommonSettings.model_fields}


def readers(name: str) -> list[str]:
    """Every `cofi run` service whose settings define `name` outside the common ones."""
    return [run for _, cls, run in SECTIONS[1:] if name in own_fields(cls)]


def _type(annotation: Any) -> str:
    if isinstance(annotation, UnionType) or get_origin(annotation) is not None:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if get_origin(annotation) is list:
            return "list"
        return _type(args[0]) if len(args) == 1 else " | ".join(_type(a) for a in args)
    if annotation is SecretStr:
        return "secret"
    return {int: "int", float: "float", bool: "bool", str: "str", Path: "path"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _default(name: str, field: FieldInfo) -> str:
    if name == "gpu_hosts":
        hosts = CommonSettings.model_fields["gpu_hosts"].get_default(call_default_factory=True)
        return ",".join(f"{h.ip}:{h.capacity}" for h in hosts)
    value = field.get_default(call_default_factory=True)
    if value is None or value == "" or value == [] or (isinstance(value, SecretStr) and not value):
        return "(unset)"
    if isinstance(value, list):  # read as a comma-separated list
        return ",".join(str(v) for v in value)
    if isinstance(value, Path):
        return value.resolve().relative_to(ROOT).as_posix() + " (installed)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _limits(field: FieldInfo) -> str:
    signs = {Ge: ("≥", "ge"), Gt: (">", "gt"), Le: ("≤", "le"), Lt: ("<", "lt")}
    parts = []
    for m in field.metadata:
        for kind, (sign, attr) in signs.items():
            if isinstance(m, kind):
                parts.append(f"{sign} {getattr(m, attr)}")
        if getattr(m, "pattern", None):
            parts.append(f"matches `{m.pattern}`")
    return ", ".join(parts)


def describe(name: str, field: FieldInfo) -> str:
    text = field.description or FALLBACK.get(name)
    if text is None:
        raise LookupError(f"setting {name} has no description: add Field(description=...)")
    return text


def _code(value: str) -> str:
    return value if value == "(unset)" else f"`{value}`"


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m cli.config_reference` from the settings classes; "
        "edit those, not this file (a test fails when it is stale). -->",
        "",
        "Every knob is an environment variable, read when a service starts "
        "(pydantic-settings, case-insensitive, no prefix). Values that do not parse stop the "
        "service with a message naming the variable. Any variable can come from a file "
        "instead: `<NAME>_FILE=/run/secrets/name` reads `<NAME>` from that file (Docker "
        "secrets; one trailing newline dropped; setting both is an error). "
        "`docker-compose.yml` sets the stack's values from `.env` (see `.env.example`); the "
        "local demo and the tests set theirs in `cli/local_stack.py`.",
        "",
    ]
    for title, cls, run in SECTIONS:
        where = (
            "every service (`shared/settings.py`)"
            if run == "all"
            else f"`cofi run {run}` (`{cls.__module__.replace('.', '/')}.py`)"
        )
        out += [f"## {title}", "", f"Read by {where}.", ""]
        out += [_row(("variable", "type", "default", "allowed", "what it does")), _row(["---"] * 5)]
        for name, field in own_fields(cls).items():
            also = [r for r in readers(name) if r != run]
            text = describe(name, field)
            if also:
                text += f" (also read by {', '.join(f'`{r}`' for r in also)})"
            out.append(
                _row(
                    (
                        f"`{name.upper()}`",
                        _type(field.annotation),
                        _code(_default(name, field)),
                        _limits(field),
                        text,
                    )
                )
            )
        out.append("")
    out += [
        "## Command line (`cofi`)",
        "",
        "`cofi status`, `cofi export`, `cofi retry`, `cofi cancel`, `cofi purge`, "
        "`cofi migrate` and `cofi demo` read `DATABASE_URL` as the tracker does (one settings "
        "class, `DatabaseSettings` in `shared/database_settings.py`; unset: SQLite `./cofi.db`, "
        "which the reading commands require to exist); `cofi submit` reads it, when set, to "
        "refuse a batch id the tracker has seen. Its driver must be an asyncio one "
        "(`mysql+asyncmy://…`, `sqlite+aiosqlite:///…`). `make demo` sets it to the local "
        "MariaDB. `cofi submit`, `cofi topics`, `cofi retry`, `cofi cancel` and `cofi drain` "
        "read the settings of every service above (`KAFKA_BOOTSTRAP_SERVERS`, `TOPIC_PREFIX`, "
        "`GPU_HOSTS`: `cofi drain` takes only a host it lists, …). "
        "A value that does not parse stops a command or a service before it starts, with one "
        "line naming the variable and exit status 2 (every exit status of `cofi`: "
        "docs/operations.md); `cofi run SERVICE --help` lists what a service reads, with the "
        "defaults.",
        "",
        "## Simulator (not part of the product)",
        "",
        "`cofi run simulator` reads `DENOISE_PORT` … `STT_PORT` like the stages, and these "
        "(each also a command-line option; see `cofi run simulator --help`):",
        "",
        _row(("variable", "default", "what it does")),
        _row(["---"] * 3),
        *(_row((f"`{n}`", f"`{d}`" if d else "(unset)", t)) for n, d, t in SIMULATOR),
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cli.config_reference", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    ns = parser.parse_args(argv)
    if ns.check:
        if not PATH.exists() or PATH.read_text() != render():
            print(f"{PATH} is stale: run python -m cli.config_reference", file=sys.stderr)
            return 1
        return 0
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(render())
    print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
