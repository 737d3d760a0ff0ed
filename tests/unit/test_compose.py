"""docker-compose.yml, checked statically (tests/e2e/test_compose_boot.py boots it): every
command is a real `cofi` command, every variable a known setting, and ports, hosts, topics,
Prometheus targets and Grafana's data source agree with the settings and with each other
(tests/compose_file.py reads the file as compose does)."""

import base64
import importlib.util
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

import simulator.config as sim_config
from cli.main import _parser
from cli.processes import service_argv
from services.dashboard.settings import WebSettings
from shared.database_settings import DatabaseSettings
from shared.settings import CommonSettings
from shared.stages import GPU_STAGES, LLM_STAGES
from simulator.__main__ import build_parser as simulator_parser
from tests.compose_file import (
    ALL_SETTINGS,
    COFI_IMAGE,
    COMPOSE,
    IMAGE_ENV,
    LONG_RUNNING,
    ROOT,
    SERVICES,
    SETTINGS,
    SIMULATOR_ENV,
    by_target,
    cofi_services,
    common,
    env,
    env_names,
    interpolate,
    listeners,
    one_shot,
    option,
    run_target,
    settings_kwargs,
)


def test_every_cofi_command_is_a_real_command_or_service_module() -> None:
    assert cofi_services(), "no service runs the cofi image"
    for name, service in cofi_services().items():
        command = service["command"]
        assert isinstance(command, list) and command, f"{name}: command must be a list"
        if "entrypoint" in service:  # a module of the image's own, not the cofi command
            python, flag, module = service["entrypoint"]
            assert (python, flag) == ("python", "-m"), f"{name}: {service['entrypoint']}"
            assert importlib.util.find_spec(module) is not None, f"{name}: no module {module}"
            continue
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
    # A service per (host, stage), scaled on its own: a group each, the tracker watching them.
    assert settings.gpu_stage_consumers == "per_stage"
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
    created = CommonSettings(**settings_kwargs(env(topics_step)))
    names = created.topics.all_topics(created.host_ips)
    for name, service in cofi_services().items():
        mine = CommonSettings(**settings_kwargs(env(service)))
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
    assert settings.kafka_bootstrap_servers == advertised["INTERNAL"]

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
    assert SERVICES["kafka-acls"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert one_shot(SERVICES["kafka-acls"])
    condition = SERVICES["topics"]["depends_on"]["kafka-acls"]["condition"]
    assert condition == "service_completed_successfully"


def test_kafka_runs_kraft_with_the_local_brokers_one_node_settings() -> None:
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")
    kafka = env(SERVICES["kafka"])
    cluster_id = kafka["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "CLUSTER_ID is not a UUID"
    script = (ROOT / "infra" / "kafka.sh").read_text()
    local = dict(re.findall(r"^([a-z][a-z.]+)=(.*)$", script, re.MULTILINE))
    props = {k.removeprefix("KAFKA_").lower().replace("_", "."): v for k, v in kafka.items()}
    props.pop("cluster.id")
    # The authorizer's, as `infra/kafka.sh start --acls` sets them (its acl_properties).
    acls = dict(re.findall(r'^  set_prop "\$1" ([a-z.]+) (\S+)$', script, re.MULTILINE))
    for key in ("authorizer.class.name", "allow.everyone.if.no.acl.found"):
        assert props.pop(key) == acls[key].strip('"'), key
    # The listeners' logins and TLS: tests/unit/test_compose_kafka.py.
    security = {k for k in props if k.startswith(("listener.name.", "sasl.", "super.users"))}
    props = {k: v for k, v in props.items() if k not in security}
    unknown = set(props) - set(local)
    assert not unknown, f"compose sets Kafka properties the local broker does not: {unknown}"
    addresses = {
        "listeners",
        "advertised.listeners",
        "controller.quorum.voters",
        "log.dirs",
        "listener.security.protocol.map",  # compose's listeners log in (SASL)
        "inter.broker.listener.name",
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
        settings = CommonSettings(**settings_kwargs(env(SERVICES[name])))
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
