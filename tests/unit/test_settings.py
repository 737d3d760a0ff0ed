from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url

from services.dashboard.settings import WebSettings
from services.gpu_stage.settings import GpuStageSettings
from services.llm_stage.settings import LlmStageSettings
from services.tracker.settings import TrackerSettings
from shared.settings import CommonSettings


def test_gpu_hosts_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_HOSTS", "127.0.0.2:4, 127.0.0.3:2:down,127.0.0.4")
    s = CommonSettings()
    assert [(h.ip, h.capacity, h.down) for h in s.gpu_hosts] == [
        ("127.0.0.2", 4, False),
        ("127.0.0.3", 2, True),
        ("127.0.0.4", 4, False),
    ]


def test_duplicate_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_HOSTS", "127.0.0.2:4,127.0.0.2:2")
    with pytest.raises(ValidationError, match="twice"):
        CommonSettings()


def test_stage_ports_default_to_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_PORT", "6011")
    s = CommonSettings()
    assert s.stage_port("denoise") == 5010
    assert s.stage_port("ivr") == 6011


def test_topic_names() -> None:
    t = CommonSettings(topic_prefix="x").topics
    assert t.gpu("stt", "127.0.0.2") == "x.stt.127.0.0.2"
    assert t.llm("llm1") == "x.llm1"
    assert "x.failed" in t.all_topics(["127.0.0.2"])


def test_any_setting_can_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = tmp_path / "llm_api_key"
    key.write_text("sk-from-a-secret\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("gpu-a:8,gpu-b:2:down")
    monkeypatch.setenv("LLM_API_KEY_FILE", str(key))
    monkeypatch.setenv("gpu_hosts_file", str(hosts))  # names are case-insensitive
    settings = LlmStageSettings()
    assert settings.llm_api_key.get_secret_value() == "sk-from-a-secret"
    assert [(h.ip, h.capacity, h.down) for h in settings.gpu_hosts] == [
        ("gpu-a", 8, False),
        ("gpu-b", 2, True),
    ]
    assert "sk-from-a-secret" not in repr(settings)


def test_a_file_variable_and_its_variable_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "key").write_text("a")
    monkeypatch.setenv("LLM_API_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("LLM_API_KEY", "b")
    with pytest.raises(SettingsError, match="set LLM_API_KEY or LLM_API_KEY_FILE, not both"):
        LlmStageSettings()


def test_a_missing_secret_file_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(tmp_path / "nope"))
    with pytest.raises(SettingsError, match=r"DATABASE_PASSWORD_FILE=.*nope: cannot read it"):
        TrackerSettings()


def test_the_database_password_goes_into_the_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("s3cr/t@x%:y\n")
    monkeypatch.setenv("DATABASE_URL", "mysql+asyncmy://cofi@mariadb:3306/cofi")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret))
    for cls in (TrackerSettings, WebSettings):
        url = make_url(cls().resolved_database_url)
        assert (url.username, url.password, url.host, url.database) == (
            "cofi",
            "s3cr/t@x%:y",
            "mariadb",
            "cofi",
        )
    monkeypatch.delenv("DATABASE_PASSWORD_FILE")
    monkeypatch.setenv("DATABASE_URL", "mysql+asyncmy://cofi:own@db/cofi")
    assert make_url(TrackerSettings().resolved_database_url).password == "own"


def test_no_setting_is_named_like_another_settings_file_variable() -> None:
    for cls in (GpuStageSettings, LlmStageSettings, TrackerSettings, WebSettings):
        names = set(cls.model_fields)
        assert not {n for n in names if n.removesuffix("_file") in names - {n}}, cls


def test_the_drain_timeout_is_a_stage_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GpuStageSettings().drain_timeout_s == LlmStageSettings().drain_timeout_s == 30.0
    monkeypatch.setenv("DRAIN_TIMEOUT_S", "75")
    assert GpuStageSettings().drain_timeout_s == LlmStageSettings().drain_timeout_s == 75.0
