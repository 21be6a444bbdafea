"""What every benchmark writes: the machine it ran on, a two-panel figure, and
bench/results/<name>.json + <name>.png with the JSON printed (one copy of each step)."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """The machine is shared: a load above the CPU count means the numbers are pessimistic."""
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def two_panels(width: float = 10) -> tuple[Any, Any, Any]:
    """(figure, left axes, right axes), drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(width, 4))
    return fig, left, right


def target_line(axes: Any, value: float, label: str = "target") -> None:
    axes.axhline(value, color="red", linestyle="--", label=label)
    axes.legend()


def write(
    name: str, report: Mapping[str, Any], figure: Any, printed: Mapping[str, Any] | None = None
) -> None:
    """<name>.png and <name>.json (the whole report) under bench/results; print `printed` (default:
    the report)."""
    RESULTS.mkdir(exist_ok=True)
    figure.tight_layout()
    figure.savefig(RESULTS / f"{name}.png", dpi=110)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    json.dump(printed if printed is not None else report, sys.stdout, indent=2)
    print()
