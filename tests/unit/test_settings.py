import pytest
from pydantic import ValidationError

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
