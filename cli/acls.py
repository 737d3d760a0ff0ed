"""Print or apply the broker's ACLs (`shared.acl_plan`), as the broker's admin user.

    python -m cli.acls users    the service users, one a line (infra/kafka.sh creates them)
    python -m cli.acls plan     every ACL, one a line
    python -m cli.acls apply    create them on the broker (KAFKA_* settings: an admin user)
    python -m cli.acls setup [FOLDER]
                                create or update each service's SCRAM user, its password
                                the file FOLDER/kafka_<user> (default KAFKA_USERS_DIR or
                                /run/secrets), and the admin's own (KAFKA_SASL_*), then apply

aiokafka has no ACL call and Kafka 4's jars ship no AclCommand: `apply` sends CreateAcls
requests itself. Creating an ACL that exists is a no-op on the broker, so `apply` is rerun
safely (compose's one-shot `kafka-acls` service runs `setup` at every start).
"""

import asyncio
import os
import sys
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from cli.kafka_users import passwords, upsert_users
from shared.acl_plan import Grant, plan, users
from shared.kafka_connection import KafkaConnection, connection
from shared.settings import CommonSettings

# Kafka's protocol codes (org.apache.kafka.common.acl / resource).
_RESOURCE_TYPE = {"topic": 2, "group": 3}
_OPERATION = {"READ": 3, "WRITE": 4, "DESCRIBE": 8}
_PATTERN_LITERAL, _PATTERN_PREFIXED = 3, 4
_ALLOW = 3


def _request(grant: Grant) -> CreateAclsRequest:
    r = grant.resource
    return CreateAclsRequest(
        resource_type=_RESOURCE_TYPE[r.kind],
        resource_name=r.name,
        resource_pattern_type_filter=_PATTERN_PREFIXED if r.prefixed else _PATTERN_LITERAL,
        principal=grant.principal,
        host="*",
        operation=_OPERATION[grant.operation],
        permission_type=_ALLOW,
    )


async def apply(
    kafka: KafkaConnection, grants: list[Grant], scram_users: dict[str, str] | None = None
) -> None:
    """Create `scram_users` (name: password), then every ACL; raises naming the first user or
    ACL the broker refused."""
    admin = AIOKafkaAdminClient(**connection(kafka).client_options())
    await admin.start()
    try:
        if scram_users:
            await upsert_users(admin, scram_users)
        for grant in grants:
            response = await admin._send_request(_request(grant))
            for error_code, error_message in response.creation_responses:
                if error_code:
                    raise RuntimeError(
                        f"the broker refused ACL {grant}: error {error_code} {error_message}"
                    )
    finally:
        await admin.close()


def main(argv: list[str]) -> int:
    action = argv[0] if argv else ""
    if action == "users":
        print("\n".join(users()))
        return 0
    settings = CommonSettings()
    grants = plan(settings.topics)
    if action == "plan":
        print("\n".join(str(g) for g in grants))
        return 0
    if action == "apply":
        asyncio.run(apply(settings.kafka, grants))
        print(f"{len(grants)} ACLs applied for users {', '.join(users())}")
        return 0
    if action == "setup":
        default = os.environ.get("KAFKA_USERS_DIR", "/run/secrets")
        folder = Path(argv[1] if len(argv) > 1 else default)
        scram = passwords(folder, users())
        kafka = settings.kafka
        if kafka.sasl_username and kafka.sasl_password is not None:
            # The admin logs in by SCRAM too, from outside (the SASL_SSL listener has no PLAIN).
            scram[kafka.sasl_username] = kafka.sasl_password.get_secret_value()
        asyncio.run(apply(kafka, grants, scram))
        print(f"SCRAM users {', '.join(scram)}; {len(grants)} ACLs applied")
        return 0
    print("usage: python -m cli.acls {users|plan|apply|setup [FOLDER]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
