"""Reading settings as a command does: a bad variable is one line naming it, not a traceback;
`--help` lists the variables a service reads.

Every `main` (the services' and `cofi`'s) builds its settings with `load_settings`, so a
mistyped `GPU_HOSTS` or `TOPIC_PREFIX` reads the same wherever it is found.
"""

import argparse
import sys
from typing import Any, TypeVar

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings
from pydantic_settings.exceptions import SettingsError

S = TypeVar("S", bound=BaseSettings)

# Exit status of a command that cannot start because of its settings (as for bad arguments).
EXIT_BAD_SETTINGS = 2


def _where(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]).upper()
    rest = [f"item {n + 1}" if isinstance(n, int) else str(n) for n in loc[1:]]
    return name + (f" ({', '.join(rest)})" if rest else "")


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per bad variable: its name and what is wrong, never its value (it may be a
    password or a URL with one in it)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        where = f"setting {_where(tuple(error['loc']))}" if error["loc"] else "settings"
        lines.append(f"{where}: {message}")
    return lines


def load_settings(cls: type[S], prog: str, **values: Any) -> S:
    """`cls()` read from the environment, or exit 2 with one line per bad variable."""
    try:
        return cls(**values)
    except ValidationError as exc:
        lines = settings_errors(exc)
    except SettingsError as exc:  # a value pydantic-settings could not even decode
        lines = [str(exc)]
    for line in lines:
        print(f"{prog}: bad {line} (see docs/configuration.md)", file=sys.stderr)
    sys.exit(EXIT_BAD_SETTINGS)


def _default(field_name: str, cls: type[BaseSettings]) -> str:
    value = cls.model_fields[field_name].get_default(call_default_factory=True)
    if field_name == "gpu_hosts":
        return ",".join(f"{h.ip}:{h.capacity}" for h in value)
    if value is None or value == "" or isinstance(value, SecretStr):
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def settings_epilog(cls: type[BaseSettings]) -> str:
    """The environment variables `cls` reads, with their defaults."""
    width = max(len(name) for name in cls.model_fields)
    lines = [
        f"  {name.upper():<{width}}  {_default(name, cls)}" for name in sorted(cls.model_fields)
    ]
    return (
        "settings (environment variables, with their defaults; each is described in "
        "docs/configuration.md):\n" + "\n".join(lines)
    )


def service_parser(
    prog: str, description: str | None, cls: type[BaseSettings]
) -> argparse.ArgumentParser:
    """A service's argument parser: `--help` prints its options and settings, starts nothing."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=settings_epilog(cls),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
