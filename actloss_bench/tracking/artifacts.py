"""Artifact writers, called as ``writer(path)`` by ``tracking.RunLogger.finish``; matplotlib
is imported only where a figure is drawn."""

from __future__ import annotations

from pathlib import Path


def write_text(text: str, path: Path) -> None:
    path.write_text(text)


def write_csv(frame, path: Path) -> None:
    frame.to_csv(path, index=False)


def write_overview(history, predictions, title: str, path: Path) -> None:
    """The run figure (loss curves, reliability, dead units, gradient norms)."""
    from actloss_bench.tracking import plots

    plots.save(plots.run_overview(history, predictions, title), path)
