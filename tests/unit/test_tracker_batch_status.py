"""The tracker's batch recomputation: counts → stage statuses and milestones (pure)."""

from datetime import datetime

from services.tracker.batch_status import (
    BatchStatusRow,
    LoggedMilestones,
    recompute,
    stage_status,
    tally,
)
from services.tracker.poll_changes import BatchTouch
from services.tracker.signatures import FileSignature
from services.tracker.tables import batch_status, file_distribution
from shared.pipeline import PIPELINE, index

T = datetime(2026, 1, 15, 12, 0)
TOUCH = BatchTouch(first_at=T, last_at=T)


def through(stage: str) -> frozenset[str]:
    """Every stage up to and including `stage`."""
    return frozenset(s.name for s in PIPELINE[: index(stage) + 1])


def before(stage: str) -> frozenset[str]:
    return frozenset(s.name for s in PIPELINE[: index(stage)])


def done(count: int) -> FileSignature:
    return FileSignature(count, through("llm2"), triage_route="stt", terminal_state="done")


def skipped(count: int) -> FileSignature:
    return FileSignature(count, through("triage"), triage_route="skip", terminal_state="skipped")


def failed_at(stage: str, count: int = 1) -> FileSignature:
    """Files that finished every stage before `stage`, then failed there."""
    route = "stt" if index(stage) > index("triage") else None
    return FileSignature(
        count, before(stage), triage_route=route, terminal_state="failed", failed_stage=stage
    )


def statuses(row: BatchStatusRow) -> dict[str, str]:
    return dict(row.statuses)


def closed(total: int) -> BatchTouch:
    return BatchTouch(first_at=T, last_at=T, total_files=total, closed_at=T)


def test_an_open_batch_never_completes() -> None:
    row, logs = recompute("b", None, TOUCH, [done(5)], {}, 100)
    assert set(statuses(row).values()) == {"InProgress"}
    assert row.status == "Pending" and row.total_files is None
    assert {r.event_type for r in logs} == {"stage_start"}


def test_closed_before_its_files_arrive() -> None:
    row, logs = recompute("b", None, closed(3), [], {}, 100)
    assert set(statuses(row).values()) == {"Pending"}
    assert logs == []
    row, _ = recompute("b", None, closed(3), [done(2)], {}, 100)
    assert row.status == "Pending"  # a third file is still to come
    row, _ = recompute("b", None, closed(3), [done(3)], {}, 100)
    assert row.status == "Complete" and row.completed_at == T


def test_closed_after_its_files_completes_the_batch() -> None:
    existing, _ = recompute("b", None, TOUCH, [done(3)], {}, 100)
    row, _ = recompute("b", existing, closed(3), [done(3)], {}, 100)
    assert set(statuses(row).values()) == {"Complete"}
    assert (row.status, row.total_files, row.done_files) == ("Complete", 3, 3)


def test_an_empty_closed_batch_is_complete() -> None:
    row, _ = recompute("b", None, closed(0), [], {}, 100)
    assert row.status == "Complete"


def test_failures_and_skips_resolve_later_stages() -> None:
    sigs = [done(5), skipped(2), failed_at("ivr"), failed_at("llm1")]
    row, logs = recompute("b", None, closed(9), sigs, {}, 100)
    assert set(statuses(row).values()) == {"Complete"}
    assert (row.done_files, row.skipped_files, row.failed_files) == (5, 2, 2)
    complete = {r.stage: r for r in logs if r.event_type == "stage_complete"}
    assert (complete["denoise"].failed_files, complete["denoise"].processed_files) == (0, 9)
    assert complete["ivr"].failed_files == 1
    assert (complete["stt"].failed_files, complete["stt"].skipped_files) == (1, 2)
    assert complete["llm2"].failed_files == 2


def test_a_stage_waits_for_files_still_in_it() -> None:
    in_ivr = FileSignature(1, through("denoise"))
    sigs = [done(3), failed_at("denoise"), in_ivr]
    row, _ = recompute("b", None, closed(5), sigs, {}, 100)
    s = statuses(row)
    assert (s["dbInsertionStatus"], s["denoiseStatus"], s["ivrStatus"]) == (
        "Complete",
        "Complete",
        "InProgress",
    )
    assert row.status == "denoiseDone"


def test_triage_skips_count_as_finished_for_stt_and_after() -> None:
    t = tally([skipped(4), done(1)], index("stt"))
    assert (t.finished, t.skipped, t.entered, t.resolved) == (1, 4, 1, 5)
    t = tally([skipped(4)], index("triage"))
    assert (t.finished, t.skipped) == (4, 0)


def test_entered_means_finished_the_stage_before() -> None:
    waiting = FileSignature(2, through("distribute"))  # denoise not finished
    assert tally([waiting], index("denoise")).entered == 2
    assert tally([waiting], index("ivr")).entered == 0
    assert stage_status(tally([waiting], index("ivr")), 2) == "Pending"
    assert tally([failed_at("lid")], index("lid")).entered == 1


def test_a_later_event_does_not_finish_an_earlier_stage() -> None:
    # The llm1 event was applied before the lid event still behind on its partition: lid
    # waits for its own event (issue 19, item 7).
    ahead = FileSignature(1, frozenset({"distribute", "triage", "llm1"}), triage_route="stt")
    assert tally([ahead], index("lid")).finished == 0
    assert tally([ahead], index("llm1")).finished == 1


def test_an_end_not_settled_holds_the_last_stage() -> None:
    # Done, every flag applied, but some event of its route (its upload, say) is unread.
    unsettled = FileSignature(1, through("llm2"), "stt", "done", ended=False)
    assert tally([unsettled], index("llm2")).finished == 0
    row, _ = recompute("b", None, closed(1), [unsettled], {}, 100)
    assert row.status != "Complete"
    settled = FileSignature(1, through("llm2"), "stt", "done")
    row, _ = recompute("b", None, closed(1), [settled], {}, 100)
    assert row.status == "Complete"


def test_done_wins_over_failed() -> None:
    retried = FileSignature(
        1, through("llm2"), triage_route="stt", terminal_state="done", failed_stage="ivr"
    )
    row, _ = recompute("b", None, closed(1), [retried], {}, 100)
    assert (row.failed_files, row.done_files, row.status) == (0, 1, "Complete")


def test_progress_rows_every_interval_without_repeats() -> None:
    _, logs = recompute("b", None, closed(1000), [done(250)], {}, 100)
    progress = [
        r.processed_files for r in logs if r.stage == "denoise" and r.event_type == "stage_progress"
    ]
    assert progress == [100, 200]
    logged = {"denoise": LoggedMilestones(started=True, progress=200)}
    _, logs = recompute("b", None, closed(1000), [done(420)], logged, 100)
    denoise = [(r.event_type, r.processed_files) for r in logs if r.stage == "denoise"]
    assert denoise == [("stage_progress", 300), ("stage_progress", 400)]


def test_ten_thousand_files_give_a_hundred_progress_rows_per_stage() -> None:
    _, logs = recompute("b", None, closed(10_000), [done(9_990), failed_at("stt", 10)], {}, 100)
    for stage in ("distribute", "denoise", "stt", "llm2"):
        rows = [r for r in logs if r.stage == stage]
        assert sum(r.event_type == "stage_progress" for r in rows) == 100
        assert sum(r.event_type == "stage_start" for r in rows) == 1
        assert sum(r.event_type == "stage_complete" for r in rows) == 1


def test_milestones_already_logged_are_not_logged_again() -> None:
    everything: dict[str, LoggedMilestones] = {
        s.name: LoggedMilestones(True, True, 3) for s in PIPELINE
    }
    _, logs = recompute("b", None, closed(3), [done(3)], everything, 1)
    assert logs == []


def test_milestone_keys_are_stable() -> None:
    _, a = recompute("b", None, closed(3), [done(3)], {}, 1)
    _, b = recompute("b", None, BatchTouch(T, T, 3, T), [done(3)], {}, 1)
    assert [r.event_key for r in a] == [r.event_key for r in b]
    assert len({r.event_key for r in a}) == len(a)


def test_timestamps() -> None:
    later = datetime(2026, 1, 16)
    first, _ = recompute("b", None, closed(2), [done(1)], {}, 100)
    row, _ = recompute("b", first, BatchTouch(later, later), [done(1)], {}, 100)
    assert (row.created_at, row.updated_at, row.closed_at) == (T, later, T)
    assert row.completed_at is None and row.status != "Complete"


def test_completed_at_is_when_the_last_file_ended_whatever_poll_completes_the_batch() -> None:
    ended = datetime(2026, 1, 15, 12, 30)
    last = FileSignature(**{**done(1).__dict__, "finished_at": ended})
    early = FileSignature(**{**done(2).__dict__, "finished_at": T})
    for touch_at in (datetime(2026, 1, 15, 13), datetime(2026, 1, 20)):
        touch = BatchTouch(touch_at, touch_at, 3, T)
        row, _ = recompute("b", None, touch, [early, last], {}, 100)
        assert (row.status, row.completed_at) == ("Complete", ended)
    # A close after the last file completes the batch at the close.
    closing = datetime(2026, 1, 15, 14)
    row, _ = recompute("b", None, BatchTouch(T, closing, 3, closing), [early, last], {}, 100)
    assert row.completed_at == closing


def test_milestones_are_stamped_with_the_batchs_latest_event_time() -> None:
    """A poll that redelivers old events after a crash stamps its milestones as the original
    poll would have: with the latest event time seen for the batch, not the poll's."""
    later = datetime(2026, 1, 15, 13)
    existing, _ = recompute("b", None, BatchTouch(T, later), [done(1)], {}, 100)
    _, logs = recompute("b", existing, closed(3), [done(3)], {}, 100)
    assert logs and {r.created_at for r in logs} == {later}


def cancelled_files(count: int, reached: str) -> FileSignature:
    """Files that finished every stage up to `reached`, then their batch was cancelled."""
    return FileSignature(count, through(reached), terminal_state="cancelled")


def cancel(at: datetime, reason: str = "operator") -> BatchTouch:
    touch = BatchTouch(at, at)
    touch.cancel(at, reason)
    return touch


def test_a_cancelled_batch_shows_where_it_stopped() -> None:
    at = datetime(2026, 1, 15, 12, 5)
    sigs = [done(2), cancelled_files(3, "ivr")]
    existing, _ = recompute("b", None, closed(5), sigs, {}, 1)
    row, logs = recompute("b", existing, cancel(at, "wrong batch"), sigs, {}, 1)
    assert (row.status, row.cancelled_at, row.cancel_reason) == ("Cancelled", at, "wrong batch")
    assert (row.done_files, row.cancelled_files, row.failed_files) == (2, 3, 0)
    assert row.completed_at is None
    got = statuses(row)
    assert got["denoiseStatus"] == got["ivrStatus"] == "Complete"
    # The cancelled files never went through lid and later stages: not Complete, no
    # stage_complete, and not counted as failures.
    assert {got[c] for c in ("lidStatus", "sttStatus", "llm2Status")} == {"InProgress"}
    assert {r.stage for r in logs if r.event_type == "stage_complete"} == {
        "distribute",
        "denoise",
        "ivr",
    }
    assert tally(sigs, index("lid")).cancelled == 3
    assert tally(sigs, index("lid")).failed == 0


def test_cancellation_sticks_and_the_first_one_counts() -> None:
    first, second = datetime(2026, 1, 15, 12, 5), datetime(2026, 1, 15, 12, 9)
    sigs = [done(1), cancelled_files(1, "lid")]
    a, _ = recompute("b", None, cancel(second, "b"), sigs, {}, 100)
    a, _ = recompute("b", a, cancel(first, "a"), sigs, {}, 100)
    b, _ = recompute("b", None, cancel(first, "a"), sigs, {}, 100)
    b, _ = recompute("b", b, cancel(second, "b"), sigs, {}, 100)
    assert a == b and (a.cancelled_at, a.cancel_reason, a.status) == (first, "a", "Cancelled")
    later, _ = recompute("b", a, BatchTouch(second, second), sigs, {}, 100)
    assert later.status == "Cancelled" and later.cancelled_at == first


def test_a_cancel_that_came_too_late_leaves_the_batch_complete() -> None:
    row, _ = recompute("b", None, closed(2), [done(2)], {}, 100)
    row, _ = recompute("b", row, cancel(datetime(2026, 1, 16)), [done(2)], {}, 100)
    assert row.status == "Complete" and row.cancelled_at is not None
    # A batch cancelled by hand in the old system (status only) stays cancelled too.
    old = BatchStatusRow(**{**row.__dict__, "status": "Cancelled", "cancelled_at": None})
    row, _ = recompute("b", old, TOUCH, [done(1)], {}, 100)
    assert row.status == "Cancelled"


def test_a_stage_is_known_by_its_position_in_the_pipeline() -> None:
    # A stage is finished by its own event: a done file waits for the rest of its events.
    assert FileSignature(1, through("llm2"), terminal_state="done").reached == len(PIPELINE) - 1
    assert FileSignature(1, terminal_state="done").reached == -1
    assert FileSignature(1).reached == -1
    assert FileSignature(1, through("lid")).outcome(index("lid")) == "finished"
    assert FileSignature(1, through("lid")).entered(index("triage"))


def test_every_stage_has_its_columns() -> None:
    for s in PIPELINE:
        assert s.status_column in batch_status.c
        assert (s.flag_column is None) != (s.decision_column is None), s
        column = s.flag_column or s.decision_column
        assert column is not None and column in file_distribution.c
