"""The upload client's producer keeps cofi's delivery settings; it imports no service."""

import re
import subprocess
import sys
from pathlib import Path

from shared.upload_client import UploadClient, uploads_for

ROOT = Path(__file__).resolve().parents[2]


async def test_the_producer_waits_for_every_replica_and_is_idempotent() -> None:
    client = UploadClient("127.0.0.1:1", "p")
    producer = client._producer
    assert producer._sender._acks == -1  # acks=all
    assert producer._txn_manager is not None  # idempotent: sequence numbers per partition
    assert client.topic == "p.uploads"


def test_uploads_name_files_by_absolute_file_uris(tmp_path: Path) -> None:
    [event] = uploads_for("b", [tmp_path / "a b.wav"])
    assert (event.batch_id, event.file_name) == ("b", "a b.wav")
    assert event.audio_uri == (tmp_path / "a b.wav").resolve().as_uri()
    assert event.audio_uri.startswith("file:///")


def test_importing_the_client_pulls_in_no_service() -> None:
    code = (
        "import sys, shared.upload_client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('services', 'cli')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_the_documented_example_compiles_against_the_client() -> None:
    doc = (ROOT / "docs" / "upload-client.md").read_text()
    [example] = re.findall(r"```python\n(.*?)```", doc, re.S)
    compile(example, "docs/upload-client.md", "exec")
    for method in re.findall(r"client\.(\w+)\(", example + doc):
        assert hasattr(UploadClient, method), method
