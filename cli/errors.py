"""How `cofi` fails: one line on stderr, and an exit status that says whose move it is."""

from enum import IntEnum


class Exit(IntEnum):
    """`cofi`'s exit statuses (README.md, docs/operations.md)."""

    OK = 0
    # The command ran and said no: an unknown or already used batch, topics that drift from
    # the plan, stale documents, a batch that did not finish in time.
    REFUSED = 1
    # Bad arguments or settings: fix the command line or the environment
    # (the same status as argparse's and `shared.settings_env.load_settings`'s).
    USAGE = 2
    # Kafka or the database did not answer, or the database is not the tracker's (no tables
    # yet): fix the dependency, then run the same command again.
    UNREACHABLE = 3
    INTERRUPTED = 130


class CliError(Exception):
    """A failure the user can act on: one line on stderr, no traceback."""

    def __init__(self, message: str, code: int = Exit.REFUSED) -> None:
        super().__init__(message)
        self.code = int(code)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
