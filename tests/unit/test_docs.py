"""The operator docs: the configuration reference is generated from the settings classes and
must not go stale; every relative link in the docs and README resolves."""

import importlib
import pkgutil
import re
from pathlib import Path

import services
import simulator.config as sim_config
from cli.config_reference import PATH, SECTIONS, SIMULATOR, render
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]


def _settings_classes() -> set[type]:
    for module in pkgutil.walk_packages(services.__path__, "services."):
        if module.name.endswith(".settings"):
            importlib.import_module(module.name)
    found: set[type] = set()
    todo = [CommonSettings]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_the_committed_configuration_reference_is_current() -> None:
    assert PATH.read_text() == render(), "stale: run python -m cli.config_reference"


def test_every_settings_class_of_every_service_is_in_the_reference() -> None:
    listed = {cls for _, cls, _ in SECTIONS}
    missing = {
        c.__name__ for c in _settings_classes() if c.__module__.startswith(("shared", "services"))
    } - {c.__name__ for c in listed}
    assert not missing, f"settings classes missing from cli/config_reference.py: {missing}"
    text = PATH.read_text()
    for cls in listed:
        for name in cls.model_fields:
            assert f"`{name.upper()}`" in text


def test_the_simulator_table_names_exactly_what_the_simulator_reads() -> None:
    reads = {name for name, _, _ in sim_config._ENV_SCALARS} | {"SIM_HOSTS", "SIM_CONFIG"}
    assert {name for name, _, _ in SIMULATOR} == reads


def test_readme_links_the_operations_guide_and_the_reference_and_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/operations.md)" in readme and "(docs/configuration.md)" in readme
    for doc in (ROOT / "README.md", ROOT / "docs" / "operations.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
