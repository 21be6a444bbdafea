"""Run every benchmark: each ``bench/<name>_bench.py`` with a ``main(argv)``; JSON + PNG under bench/results/.

python -m bench.run [name ...] [-- args passed to each benchmark]
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def available() -> list[str]:
    return sorted(p.stem.removesuffix("_bench") for p in Path(__file__).parent.glob("*_bench.py"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    names = [a for a in (argv[: argv.index("--")] if "--" in argv else argv)] or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}",
            file=sys.stderr,
        )
        return 2
    status = 0
    for name in names:
        print(f"== {name} ==", file=sys.stderr)
        status |= importlib.import_module(f"bench.{name}_bench").main(extra)
    return status


if __name__ == "__main__":
    sys.exit(main())
