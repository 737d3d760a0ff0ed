"""The export's one-pass join: a file row with its stages' last answers, in file order."""

import json

from cli.export_rows import COLUMNS, LLM_STAGES, AnswerRow, FileRow, join


def _file(name: str, state: str = "done") -> FileRow:
    return FileRow(name, "b1", "10.0.0.1", state, None, None, "stt", "no rule", None, None)


def _answer(name: str, stage: str, payload: object, ms: float = 5.0) -> AnswerRow:
    text = None if payload is None else json.dumps(payload)
    return AnswerRow(name, stage, text, ms)


def test_each_file_gets_its_own_answers_and_every_column() -> None:
    rows = list(
        join(
            [_file("a.wav"), _file("b.wav")],
            [
                _answer("a.wav", "lid", {"language": "de"}),
                _answer("a.wav", "ivr", {"is_ivr": False}),
                _answer("a.wav", "stt", {"transcript": "hallo"}, ms=12.5),
                _answer("b.wav", "lid", {"language": "en"}),
            ],
        )
    )
    assert [r["file"] for r in rows] == ["a.wav", "b.wav"]
    assert all(tuple(r) == COLUMNS for r in rows)
    assert (rows[0]["language"], rows[0]["is_ivr"], rows[0]["transcript"]) == ("de", False, "hallo")
    assert rows[0]["stt_ms"] == 12.5
    assert (rows[1]["language"], rows[1]["transcript"]) == ("en", None)


def test_a_retried_stage_counts_its_last_answer() -> None:
    (row,) = join(
        [_file("a.wav")],
        [_answer("a.wav", "lid", {"language": "fr"}), _answer("a.wav", "lid", {"language": "es"})],
    )
    assert row["language"] == "es"


def test_answers_of_files_the_batch_does_not_list_are_passed_over() -> None:
    rows = list(
        join(
            [_file("b.wav")],
            [
                _answer("a.wav", "lid", {"language": "fr"}),
                _answer("b.wav", "lid", {"language": "it"}),
            ],
        )
    )
    assert [(r["file"], r["language"]) for r in rows] == [("b.wav", "it")]


def test_llm_answers_are_json_and_purged_payloads_are_flagged() -> None:
    first, *_ = LLM_STAGES
    (row,) = join(
        [_file("a.wav")],
        [_answer("a.wav", first, {"summary": "s", "topics": ["x"]}), _answer("a.wav", "stt", None)],
    )
    assert json.loads(row[f"{first}_answer"]) == {"summary": "s", "topics": ["x"]}
    assert row["transcript"] is None
    assert row["payloads_purged"] is True


def test_a_file_without_answers_still_has_a_row() -> None:
    (row,) = join([_file("a.wav", state="failed")], [])
    assert row["terminal_state"] == "failed"
    assert row["payloads_purged"] is False
