"""Where every benchmark writes its result: benchmarks/out/<name>.json (data) + .md (table)."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def write_results(name: str, data, md: str, out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{name}.md").write_text(md)
    print(md)
