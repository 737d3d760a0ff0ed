"""The lock files (`make lock`) pin every dependency pyproject.toml names, with hashes, at a
version its specifier allows: the image installs requirements/services.lock, `make install`
requirements/dev.lock, `make install-real` requirements/real.lock (the reference GPU host and
the test audio), all with `--require-hashes`."""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", re.M)


def pins(lock: str) -> dict[str, Version]:
    text = (ROOT / "requirements" / lock).read_text()
    found: dict[str, Version] = {canonicalize_name(n): Version(v) for n, v in PIN.findall(text)}
    assert found, lock
    blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text.split("\n", 2)[2])
    for block in blocks:
        assert "--hash=sha256:" in block, f"{lock}: no hash for {block.splitlines()[0]}"
    return found


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        ("services.lock", ("image",)),
        ("dev.lock", ("dev",)),
        ("real.lock", ("dev", "model-host", "test-audio")),
    ],
)
def test_the_lock_pins_every_requirement_within_its_specifier(
    lock: str, extras: tuple[str, ...]
) -> None:
    pinned = pins(lock)
    wanted = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        wanted += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    for requirement in wanted:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} lacks {name}: run make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock}: {name}=={pinned[name]} is outside {requirement.specifier}: run make lock"
        )


def test_make_install_and_the_image_install_from_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/dev.lock" in makefile
    assert "--no-deps -e ." in makefile
    assert "--require-hashes -r requirements/real.lock" in makefile
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/services.lock" in dockerfile
