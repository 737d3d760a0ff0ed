"""House rules as tests (`make lint` runs this file): module size, stage names, status words,
measured figures.

Each allowlist below names files that break a rule today and why; it may only shrink: a listed
file that keeps the rule again fails the test until its entry is removed.
"""

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.pipeline import PIPELINE
from shared.status import Status

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400

# Every package the project checks, tests included; model_host is the reference GPU host,
# written from the model API's contract alone (it keeps its own list of the stages it serves).
SIZE_FOLDERS = (
    "services",
    "shared",
    "cli",
    "simulator",
    "bench",
    "model_host",
    "real_calls",
    "tests",
)
# Modules over MAX_LINES still to split.
KNOWN_OVERSIZE: dict[str, str] = {}

# The product's stage lists come from shared/pipeline.py; shared/stages.py holds their types.
STAGE_LIST_FOLDERS = ("services", "shared", "cli", "bench", "real_calls")
STAGE_LIST_HOMES = frozenset({"shared/pipeline.py", "shared/stages.py"})
KNOWN_STAGE_LISTS: dict[str, str] = {}
STAGE_NAMES: frozenset[str] = frozenset(row.name for row in PIPELINE)

# The words of the tracker's status columns are shared.status's enum; the migrations keep theirs.
STATUS_WORD_FOLDERS = ("services", "shared", "cli", "bench")
STATUS_WORDS = frozenset(Status)
KNOWN_STATUS_WORDS: dict[str, str] = {}

# A number with a unit of time, size or share: a measurement belongs in bench/FINDINGS.md.
FIGURE_FOLDERS = ("services", "shared", "cli")
FIGURE = re.compile(r"\d(?:[\d,.]*\d)?\s*(?:ms|µs|us|%|MiB|KiB|GiB)(?![A-Za-z])")


def _modules(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_over_400_lines() -> None:
    over = {
        _name(p): _lines(p)
        for p in _modules(*SIZE_FOLDERS)
        if _lines(p) > MAX_LINES and _name(p) not in KNOWN_OVERSIZE
    }
    assert not over, f"modules over {MAX_LINES} lines (split them): {over}"


def test_each_known_oversize_module_still_is() -> None:
    fixed = [n for n in KNOWN_OVERSIZE if not (ROOT / n).exists() or _lines(ROOT / n) <= MAX_LINES]
    assert not fixed, f"no longer over {MAX_LINES} lines, remove from KNOWN_OVERSIZE: {fixed}"


def stage_lists(source: str) -> list[tuple[int, list[str]]]:
    """(line, names) of each literal tuple, list or set of two or more stage names, and of
    each string that is only stage names separated by commas ("llm1,llm2")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = [
                e.value
                for e in node.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
                if e.value in STAGE_NAMES
            ]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            parts = [part.strip() for part in node.value.split(",")]
            names = parts if all(part in STAGE_NAMES for part in parts) else []
        else:
            continue
        if len(names) >= 2:
            found.append((node.lineno, names))
    return sorted(found)


def test_stage_lists_are_found() -> None:
    source = 'A = ("denoise", "ivr")\nB = ["stt", 1, "llm1"]\nC = "llm1,llm2"\nD = ("stt",)\n'
    assert stage_lists(source) == [
        (1, ["denoise", "ivr"]),
        (2, ["stt", "llm1"]),
        (3, ["llm1", "llm2"]),
    ]
    assert stage_lists('E = {"stt": 1, "llm1": 2}\nF = "lid, the stage"\n') == []


def _stage_lists_by_module() -> dict[str, list[tuple[int, list[str]]]]:
    found = {}
    for path in _modules(*STAGE_LIST_FOLDERS):
        name = _name(path)
        if name in STAGE_LIST_HOMES or "/migrations/" in name:
            continue
        lists = stage_lists(path.read_text())
        if lists:
            found[name] = lists
    return found


def test_no_literal_list_of_stage_names() -> None:
    found = {k: v for k, v in _stage_lists_by_module().items() if k not in KNOWN_STAGE_LISTS}
    assert not found, f"derive these from shared/pipeline.py (PIPELINE, stages_of): {found}"


def test_each_known_stage_list_still_is() -> None:
    fixed = [n for n in KNOWN_STAGE_LISTS if n not in _stage_lists_by_module()]
    assert not fixed, f"no stage list any more, remove from KNOWN_STAGE_LISTS: {fixed}"


def status_words(source: str) -> list[tuple[int, str]]:
    """(line, word) of each string that is exactly a status word ("Complete")."""
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if node.value in STATUS_WORDS
    )


def _status_words_by_module() -> dict[str, list[tuple[int, str]]]:
    return {
        _name(p): hits
        for p in _modules(*STATUS_WORD_FOLDERS)
        if _name(p) != "shared/status.py" and "/migrations/" not in _name(p)
        if (hits := status_words(p.read_text()))
    }


def test_status_words_are_found() -> None:
    source = 'A = "Complete"\nB = ("Pending", "x")\nC = "Complete rows"\n'
    assert status_words(source) == [(1, "Complete"), (2, "Pending")]


def test_status_words_come_from_the_enum() -> None:
    found = {k: v for k, v in _status_words_by_module().items() if k not in KNOWN_STATUS_WORDS}
    assert not found, f"use shared.status.Status for these: {found}"


def test_each_known_status_word_user_still_is() -> None:
    fixed = [n for n in KNOWN_STATUS_WORDS if n not in _status_words_by_module()]
    assert not fixed, f"no status word any more, remove from KNOWN_STATUS_WORDS: {fixed}"


def figures(source: str) -> list[tuple[int, str]]:
    """(line, text) of each measured-looking figure in a comment or a docstring (any string
    that is a statement of its own)."""
    found = [
        (tok.start[0], match.group(0))
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
        for match in FIGURE.finditer(tok.string)
    ]
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            text = node.value.value
            found += [
                (node.lineno + text[: m.start()].count("\n"), m.group(0))
                for m in FIGURE.finditer(text)
            ]
    return sorted(found)


def test_figures_are_found() -> None:
    source = (
        '"""Costs 110 us per request."""\n'
        "x = 1  # about 12% of the CPU\n"
        'y = "500 ms"  # a value, not a comment\n'
        "# 64 KiB, 1.5 MiB, 3,000ms\n"
    )
    assert figures(source) == [
        (1, "110 us"),
        (2, "12%"),
        (4, "1.5 MiB"),
        (4, "3,000ms"),
        (4, "64 KiB"),
    ]
    assert figures("# strftime('%Y'), 4 stages, fetch_max_wait_ms\n") == []


def test_no_measured_figures_in_comments_or_docstrings() -> None:
    found = {_name(p): hits for p in _modules(*FIGURE_FOLDERS) if (hits := figures(p.read_text()))}
    assert not found, f"measured figures belong in bench/FINDINGS.md, not in the code: {found}"
