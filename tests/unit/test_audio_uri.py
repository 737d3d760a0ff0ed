"""The distributor's `audio_uri` allowlist: pure checks, settings, and routing to cofi.failed."""

import pytest
from pydantic import ValidationError

from services.distributor.routing import Incoming, route_upload
from services.distributor.settings import DistributorSettings
from shared.audio_uri import AudioUriPolicy, audio_uri_problem
from shared.events import FileFailed, FileStageCompleted, FileUploaded, encode
from shared.settings import GpuHost
from shared.topics import Topics

POLICY = AudioUriPolicy.of(["file", "s3"], ["/data/audio", "s3://calls/in/"])
TOPICS = Topics("c")
HOSTS = [GpuHost(ip="h1")]


@pytest.mark.parametrize(
    "uri",
    [
        "file:///data/audio/b1/call.wav",
        "file://localhost/data/audio/call%20one.wav",
        "FILE:///data/audio/x.wav",
        "s3://calls/in/b1/call.wav",
    ],
)
def test_uris_under_an_allowed_root_pass(uri: str) -> None:
    assert audio_uri_problem(uri, POLICY) is None


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "scheme 'http' is not allowed"),
        ("https://audio.example.com/a.wav", "scheme 'https' is not allowed"),
        ("gopher://x/", "not allowed"),
        ("/data/audio/a.wav", "no scheme"),
        ("a.wav", "no scheme"),
        ("file:///etc/passwd", "outside AUDIO_URI_ALLOWED_ROOTS"),
        ("file:///data/audio2/a.wav", "outside AUDIO_URI_ALLOWED_ROOTS"),
        ("file:///data/audio/../../etc/shadow", "'..'"),
        ("file:///data/audio/%2e%2e/secret.wav", "'..'"),
        ("file://fileserver/data/audio/a.wav", "remote file host"),
        ("file:///data/audio/a.wav?x=1", "query or a fragment"),
        ("file:///data/audio/a\n.wav", "control characters"),
        ("s3://other-bucket/a.wav", "outside AUDIO_URI_ALLOWED_ROOTS"),
        ("s3://calls/in-other/a.wav", "outside AUDIO_URI_ALLOWED_ROOTS"),
    ],
)
def test_anything_else_is_refused_with_a_reason(uri: str, reason: str) -> None:
    problem = audio_uri_problem(uri, POLICY)
    assert problem is not None and reason in problem, problem


def test_a_scheme_without_a_url_root_is_refused() -> None:
    policy = AudioUriPolicy.of(["file", "s3"], ["/data/audio"])
    assert audio_uri_problem("s3://calls/in/a.wav", policy) == (
        "no AUDIO_URI_ALLOWED_ROOTS entry for scheme 's3'"
    )


def test_the_defaults_admit_local_files_only() -> None:
    policy = DistributorSettings().audio_uri_policy
    assert audio_uri_problem("file:///tmp/pytest/a.wav", policy) is None
    assert audio_uri_problem("http://127.0.0.1:8080/a.wav", policy) is not None


def test_settings_read_comma_separated_lists_and_refuse_bad_roots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUDIO_URI_ALLOWED_SCHEMES", "File, s3")
    monkeypatch.setenv("AUDIO_URI_ALLOWED_ROOTS", "/data/audio/, s3://calls/in/")
    s = DistributorSettings()
    assert s.audio_uri_allowed_schemes == ["file", "s3"]
    assert s.audio_uri_allowed_roots == ["/data/audio", "s3://calls/in/"]
    for bad in ("data/audio", "s3:///x", "/data/../etc", ""):
        monkeypatch.setenv("AUDIO_URI_ALLOWED_ROOTS", bad)
        with pytest.raises(ValidationError, match="audio_uri_allowed_roots"):
            DistributorSettings()


def _upload(uri: str) -> Incoming:
    event = FileUploaded(batch_id="b1", file_name="a.wav", audio_uri=uri)
    return Incoming(topic="c.uploads", partition=0, offset=3, key=b"b1", value=encode(event))


def test_a_refused_upload_fails_at_once_and_no_gpu_host_sees_it() -> None:
    [out] = route_upload(_upload("http://169.254.169.254/x"), HOSTS, TOPICS, audio_policy=POLICY)
    failure = out.event
    assert out.topic == "c.failed" and out.key == b"b1/a.wav"
    assert isinstance(failure, FileFailed)
    assert (failure.stage, failure.error_kind, failure.host) == ("distribute", "permanent", None)
    assert failure.error.startswith("not distributed: audio_uri scheme 'http' is not allowed")
    assert failure.input_event["audio_uri"] == "http://169.254.169.254/x"


def test_an_allowed_upload_is_routed_as_before() -> None:
    [out] = route_upload(_upload("file:///data/audio/a.wav"), HOSTS, TOPICS, audio_policy=POLICY)
    assert out.topic == "c.denoise.h1"
    assert isinstance(out.event, FileStageCompleted)
