"""Compose's Kafka locked down (docs/operations.md, "Kafka users and ACLs"): every listener
outside the broker's own container logs in, the authorizer refuses what the ACL plan does not
grant, and each service logs in as its own user, made with its ACLs before it starts
(tests/e2e/test_compose_boot.py boots it and shows the upload user refused)."""

import pytest

from cli.kafka_users import secret_name
from shared.acl_plan import OPERATOR, TRACKER, user_of, users
from shared.settings import CommonSettings
from tests.compose_file import (
    SERVICES,
    cofi_services,
    env,
    listeners,
    run_target,
    settings_kwargs,
)
from tests.unit.test_compose_operations import SECRET_NAME


def test_kafka_is_locked_down_every_listener_outside_the_broker_logs_in() -> None:
    kafka = env(SERVICES["kafka"])
    bound = listeners(kafka["KAFKA_LISTENERS"])
    advertised = listeners(kafka["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) == set(protocols) == {"INTERNAL", "CONTROLLER", "EXTERNAL"}
    assert set(advertised) == {"INTERNAL", "EXTERNAL"}
    # Services inside the network log in; the upload system outside it over TLS too.
    assert protocols == {
        "INTERNAL": "SASL_PLAINTEXT",
        "EXTERNAL": "SASL_SSL",
        "CONTROLLER": "PLAINTEXT",
    }
    # The controller's listener (no login, its principal a super user) is the broker's own.
    assert bound["CONTROLLER"].startswith("127.0.0.1:")
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@{bound['CONTROLLER']}"
    host, port = advertised["EXTERNAL"].rsplit(":", 1)
    container_port = bound["EXTERNAL"].rsplit(":", 1)[1]
    assert (host, port) == ("localhost", "9094")
    assert SERVICES["kafka"]["ports"] == [f"127.0.0.1:{port}:{container_port}"]
    assert kafka["KAFKA_LISTENER_NAME_EXTERNAL_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith(".StandardAuthorizer")
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_SUPER_USERS"] == "User:admin;User:ANONYMOUS"
    assert not any(SECRET_NAME.search(k) and not k.endswith("LOCATION") for k in kafka), (
        "the broker's passwords come from secrets (deploy/kafka/start.sh)"
    )


# Which user each service logs in as (shared/acl_plan.py); the one-shot steps as the admin.
SERVICE_USERS = {
    "distributor": user_of("distributor"),
    "gpu-stage": user_of("gpu_stage"),
    "llm-stage": user_of("llm_stage"),
    "tracker": TRACKER,
}


def test_each_service_logs_in_to_kafka_as_its_own_user_whose_acls_exist() -> None:
    setup = SERVICES["kafka-acls"]
    assert setup["entrypoint"] == ["python", "-m", "cli.acls"] and setup["command"] == ["setup"]
    assert set(setup["secrets"]) == {secret_name(u) for u in (*users(), "admin")}
    for name, service in cofi_services().items():
        variables = env(service)
        target = run_target(service)
        if target and target[0] in SERVICE_USERS and name != "migrate":
            user = SERVICE_USERS[target[0]]
        elif name == "upload-demo":
            user = OPERATOR  # `cofi submit` reads the uploads too: is the batch id new?
        elif name in ("kafka-acls", "topics"):
            user = "admin"
            assert variables["KAFKA_SASL_MECHANISM"] == "PLAIN", name
        else:
            # Never connects to Kafka (web, migrate, the simulators): no Kafka login at all.
            assert "KAFKA_SASL_USERNAME" not in variables, name
            continue
        settings = CommonSettings(**settings_kwargs(variables))
        assert settings.kafka.security_protocol == "SASL_PLAINTEXT", name
        assert variables["KAFKA_SASL_USERNAME"] == user, name
        assert variables["KAFKA_SASL_PASSWORD_FILE"] == f"/run/secrets/{secret_name(user)}", name
        assert secret_name(user) in service["secrets"], name
        for dependency in ("kafka", "kafka-acls", "topics"):
            if dependency in service.get("depends_on", {}):
                break
        else:
            pytest.fail(f"{name} may start before the users and ACLs exist")
        if user != "admin":
            assert settings.kafka.sasl_mechanism == "SCRAM-SHA-512", name
