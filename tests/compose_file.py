"""docker-compose.yml read as compose reads it (`${VAR:-default}` interpolated, from defaults
or a given .env), and the questions its tests ask of it: each service's variables, its `cofi`
command, the settings classes that read them."""

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings

import simulator.config as sim_config
from services.dashboard.settings import WebSettings
from services.distributor.settings import DistributorSettings
from services.gpu_stage.settings import GpuStageSettings
from services.llm_stage.settings import LlmStageSettings
from services.tracker.settings import TrackerSettings
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[1]
RAW = (ROOT / "docker-compose.yml").read_text()
ENV_EXAMPLE = ROOT / ".env.example"
# `$$`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$VAR` (compose's syntax).
VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """The compose file as `docker compose config` sees it with `variables` as its .env."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg, current = m.group("op"), m.group("arg") or "", variables.get(name)
        if op in (":?", "?") and not current:
            raise AssertionError(f"{name} is required: {arg}")
        if op == ":-":
            return current or arg
        if op == "-":
            return arg if current is None else current
        return current or ""

    return VARIABLE.sub(substitute, value)


def load_compose(variables: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load(RAW), variables or {})  # type: ignore[no-any-return]


COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
COFI_IMAGE = "cofi:latest"
# The settings class each `cofi run <service>` reads; the one-shot commands read the common one.
SETTINGS: dict[str, type[BaseSettings]] = {
    "distributor": DistributorSettings,
    "gpu-stage": GpuStageSettings,
    "llm-stage": LlmStageSettings,
    "tracker": TrackerSettings,
    "web": WebSettings,
}
ALL_SETTINGS: tuple[type[BaseSettings], ...] = (CommonSettings, *SETTINGS.values())
SIMULATOR_ENV = {
    *sim_config.PORT_ENV.values(),
    *(name for name, _, _ in sim_config._ENV_SCALARS),
    "SIM_HOSTS",
    "SIM_CONFIG",
    "GPU_HOSTS",
}
# The images' own variables, allowed on those images only.
IMAGE_ENV = {
    "apache/kafka": re.compile(r"^(KAFKA_[A-Z0-9_]+|CLUSTER_ID)$"),
    "mariadb": re.compile(
        r"^MARIADB_(DATABASE|USER|PASSWORD_FILE|ROOT_PASSWORD_FILE|AUTO_UPGRADE)$"
    ),
    # COFI_DB_NAME: expanded in the provisioned data source.
    "grafana/grafana": re.compile(r"^(GF_[A-Z0-9_]+|COFI_DB_NAME)$"),
}
LONG_RUNNING = ("tracker", "distributor", "gpu-stage", "llm-stage", "web")


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The variables a settings class reads: its fields' names, upper-cased (no prefix), and
    each as `<NAME>_FILE` (its value from a file, shared/settings.py)."""
    assert not cls.model_config.get("env_prefix"), f"{cls.__name__} has an env prefix"
    names = {name.upper() for name in cls.model_fields}
    return names | {f"{name}_FILE" for name in names}


def env(service: dict[str, Any]) -> dict[str, Any]:
    """The service's variables as strings (typed Any: they go to settings classes as keyword
    arguments, which parse them)."""
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def settings_kwargs(variables: dict[str, Any]) -> dict[str, Any]:
    """Variables as a settings class's keywords; a secret's `<NAME>_FILE` names a file that
    exists only in the container: a value stands in for it."""
    return {
        k.lower().removesuffix("_file"): "x" if k.endswith("_FILE") else v
        for k, v in variables.items()
    }


def cofi_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in SERVICES.items() if s.get("image") == COFI_IMAGE}


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def run_target(service: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(`cofi run` service name, its arguments), or None for another cofi command."""
    command = service["command"]
    return (command[1], command[2:]) if command[0] == "run" else None


def by_target(target: str) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in cofi_services().items() if (run_target(s) or ("",))[0] == target}


def option(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def common() -> CommonSettings:
    """The settings every cofi service shares (the x-cofi-env block)."""
    return CommonSettings(**{k.lower(): v for k, v in COMPOSE["x-cofi-env"].items()})


def listeners(value: str) -> dict[str, str]:
    """`NAME://host:port,...` as {NAME: host:port}."""
    return dict(item.split("://", 1) for item in value.split(","))
