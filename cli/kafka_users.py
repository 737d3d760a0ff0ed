"""SCRAM users on the broker, made by the Kafka protocol (AlterUserScramCredentials, KIP-554).

aiokafka has no call for it and the stack's Kafka image has no kafka-configs.sh, so the request
is declared here, as `cli.acls` declares CreateAcls. The client salts and hashes the password
itself (RFC 5802's Hi(), PBKDF2): the broker never sees it. Upserting a user that exists
replaces its credential, so `python -m cli.acls setup` is rerun safely at every start.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

# org.apache.kafka.clients.admin.ScramMechanism; 4096 is Kafka's minimum for both.
MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
ITERATIONS = 8192
# aiokafka is untyped here (Any): its protocol classes are subclassed with `type: ignore`.


class AlterUserScramCredentialsResponse_v0(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


_Struct: TypeAlias = AlterUserScramCredentialsRequest_v0


@dataclass(frozen=True)
class Upsertion:
    """One user's credential for one mechanism, salted and hashed on this side."""

    name: str
    mechanism: int
    iterations: int
    salt: bytes
    salted_password: bytes


def upsertion(name: str, password: str, mechanism: str = "SCRAM-SHA-512") -> Upsertion:
    code, digest = MECHANISMS[mechanism]
    salt = os.urandom(32)
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, ITERATIONS)
    return Upsertion(name, code, ITERATIONS, salt, salted)


class AlterUserScramCredentials(Request[_Struct]):  # type: ignore[misc]
    API_KEY = 51

    def __init__(self, upsertions: list[Upsertion]) -> None:
        self._upsertions = upsertions

    def build(self, request_struct_class: type[_Struct]) -> _Struct:
        rows: list[tuple[object, ...]] = [
            (u.name, u.mechanism, u.iterations, u.salt, u.salted_password, {})
            for u in self._upsertions
        ]
        return request_struct_class([], rows, {})


def secret_name(user: str) -> str:
    """The file holding the user's password: `kafka_<user>` (compose's secret of that name)."""
    return "kafka_" + user.replace("-", "_")


def passwords(folder: Path, users: tuple[str, ...]) -> dict[str, str]:
    """Each user's password from its file in `folder` (`secret_name`); a missing or empty file
    is an error naming it: the service of that user could not log in."""
    found: dict[str, str] = {}
    for user in users:
        path = folder / secret_name(user)
        secret = path.read_text().strip() if path.is_file() else ""
        if not secret:
            raise RuntimeError(f"no password for Kafka user {user!r}: {path} is missing or empty")
        found[user] = secret
    return found


async def upsert_users(admin: AIOKafkaAdminClient, users: dict[str, str]) -> None:
    """Create or replace each user's SCRAM-SHA-512 credential (the clients' default mechanism);
    raises naming the first user the broker refused."""
    rows = [upsertion(name, pw) for name, pw in users.items()]
    response = await admin._send_request(AlterUserScramCredentials(rows))
    for user, error_code, error_message, _tags in response.results:
        if error_code:
            raise RuntimeError(
                f"the broker refused SCRAM user {user!r}: error {error_code} {error_message}"
            )
