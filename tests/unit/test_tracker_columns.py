"""The tracker's rows to statement parameters, derived from the dataclasses and the tables."""

from dataclasses import dataclass
from datetime import datetime

import pytest

from services.tracker import columns
from services.tracker.batch_status import BatchStatusRow
from services.tracker.poll_changes import AttemptRow, FileChange, file_key
from services.tracker.tables import FLAG_COLUMNS, STATUS_COLUMNS, batch_status, processing_logs

T = datetime(2026, 1, 15, 12, 0)


def test_seed_columns_keep_their_names_and_ours_are_camel_case() -> None:
    a = AttemptRow(
        "k", "f.wav", "b", "stt", "failure", "boom", "{}", None, 2, "h", "transient", T, 1.5
    )
    params = columns.ATTEMPT.params(a)
    assert params["call_id"] == "f.wav" and params["stage_name"] == "stt"
    assert (params["attemptKey"], params["errorKind"], params["durationMs"]) == (
        "k",
        "transient",
        1.5,
    )
    assert set(params) == {c.name for c in processing_logs.c} - {"id"}


def test_a_file_change_fills_its_flags_and_key() -> None:
    change = FileChange("b", "f.wav", T, T, flags=frozenset({"sttDone"}), triage_route="stt")
    params = columns.file_params(change)
    assert (params["file"], params["fileKey"], params["triageRoute"]) == (
        "f.wav",
        file_key("f.wav"),
        "stt",
    )
    assert {name: params[name] for name in FLAG_COLUMNS} == {
        name: int(name == "sttDone") for name in FLAG_COLUMNS
    }


def test_a_batch_row_round_trips_and_old_nulls_read_as_defaults() -> None:
    row = BatchStatusRow(
        "b", tuple((c, "Complete") for c in STATUS_COLUMNS), "Complete", 3, 3, 2, 1, 0, T, T, T, T
    )
    params = columns.batch_params(row)
    assert set(params) == {c.name for c in batch_status.c} - {"id"}
    assert columns.batch_row(params) == row  # type: ignore[arg-type]
    written_by_the_old_system = {name: None for name in params} | {"batchId": "old"}
    old = columns.batch_row(written_by_the_old_system)  # type: ignore[arg-type]
    assert set(dict(old.statuses).values()) == {"Pending"} and old.status == "Pending"
    assert (old.known_files, old.failed_files, old.total_files) == (0, 0, None)


def test_a_field_without_a_column_fails_at_once() -> None:
    @dataclass(frozen=True)
    class Odd:
        call_id: str
        no_such_thing: int

    with pytest.raises(LookupError, match="processing_logs has no noSuchThing"):
        columns.RowColumns(Odd, processing_logs)
