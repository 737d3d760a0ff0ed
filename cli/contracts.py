"""Write the contracts with the teams around cofi from the code (`cofi contracts`).

- docs/asyncapi.yaml: every topic (AsyncAPI 3), `cli/asyncapi.py`;
- docs/gpu-model-api.yaml (OpenAPI 3.1) and docs/gpu-model-api.md: what GPU hosts serve,
  `cli/gpu_api.py` and `cli/gpu_api_md.py`.

`--check` exits 1 when a committed document differs from what the code renders (the tests
check the same).
"""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from cli import asyncapi, gpu_api, gpu_api_md

DOCUMENTS: tuple[tuple[Path, Callable[[], str]], ...] = (
    (asyncapi.PATH, asyncapi.render),
    (gpu_api.YAML_PATH, gpu_api.render_yaml),
    (gpu_api_md.MD_PATH, gpu_api_md.render_markdown),
)


def stale() -> list[Path]:
    return [path for path, render in DOCUMENTS if not path.exists() or path.read_text() != render()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cofi contracts", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when a document is stale")
    ns = parser.parse_args(argv)
    try:
        import yaml  # noqa: F401 - a development dependency; say so rather than a traceback
    except ImportError:
        print("cofi contracts: needs PyYAML (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    if ns.check:
        old = stale()
        for path in old:
            print(f"{path} is stale: run cofi contracts", file=sys.stderr)
        return 1 if old else 0
    for path, render in DOCUMENTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render())
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
