"""Run every benchmark: each `bench/bench_*.py` module's `main()`, in name order."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    for path in sorted(HERE.glob("bench_*.py")):
        print(f"== {path.stem}")
        importlib.import_module(f"bench.{path.stem}").main()


if __name__ == "__main__":
    main()
