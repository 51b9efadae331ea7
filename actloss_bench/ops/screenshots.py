"""The MLflow UI in a real browser (Debian's Chromium driven by playwright): the pages a
reviewer opens, checked and photographed. ``tests/test_browser.py`` checks them on a small store;
``python -m actloss_bench.ops.screenshots`` photographs the catalogue's store for ``docs/``::

    make ui &        # or any MLflow UI over the store
    .venv/bin/python -m actloss_bench.ops.screenshots --experiment mse_collapse --out docs
"""

from __future__ import annotations

import argparse
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from actloss_bench.ops.ui import address

WORKFLOW = "workflowType=machine_learning"
TIMEOUT_MS = 60_000


def chromium_path() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def browser_page(width: int = 1500, height: int = 860):
    """A playwright page in Debian's Chromium (playwright's own browser download is not needed)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def _close_assistant(page) -> None:
    """MLflow 3 opens an assistant panel beside every page; a picture of the runs needs none."""
    button = page.get_by_role("button", name="Close")
    if button.count():
        button.first.click()


def open_runs(page, base: str, experiment_id: str, shot: Optional[Path] = None) -> int:
    """The experiment's model runs as ``make ui`` prints the address; returns how many rows the
    table says match."""
    page.goto(address(base, experiment_id))
    page.wait_for_selector("text=matching runs", timeout=TIMEOUT_MS)
    page.wait_for_selector('[col-id^="metrics."]', timeout=TIMEOUT_MS)
    _close_assistant(page)
    if shot is not None:
        page.screenshot(path=str(shot))
    return int(page.locator("text=matching runs").first.inner_text().split()[0])


def open_run_charts(page, base: str, experiment_id: str, run_id: str,
                    shot: Optional[Path] = None) -> int:
    """A run's metric charts; returns how many rendered (plotly SVGs)."""
    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics?{WORKFLOW}")
    page.wait_for_selector(".main-svg", timeout=TIMEOUT_MS)
    _close_assistant(page)
    page.wait_for_timeout(1000)  # the charts below the first finish drawing
    if shot is not None:
        page.screenshot(path=str(shot))
    return page.locator(".main-svg").count()


def open_figure(page, base: str, experiment_id: str, run_id: str, path: str,
                shot: Optional[Path] = None) -> int:
    """A figure artifact in the run's artifact browser; returns its decoded width in pixels."""
    page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{path}?{WORKFLOW}")
    image = page.locator(f'img[alt="{path}"]').first
    image.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                           arg=image.element_handle(), timeout=TIMEOUT_MS)
    _close_assistant(page)
    if shot is not None:
        page.screenshot(path=str(shot))
    return image.evaluate("img => img.naturalWidth")


def main(argv=None) -> None:
    from actloss_bench.tracking.store import mlflow_client

    parser = argparse.ArgumentParser(prog="python -m actloss_bench.ops.screenshots")
    parser.add_argument("--base", default="http://127.0.0.1:5000", help="the MLflow UI's address")
    parser.add_argument("--experiment", default="mse_collapse")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    client = mlflow_client(args.base)
    exp = client.get_experiment_by_name(args.experiment)
    if exp is None:
        raise SystemExit(f"screenshots: error: no experiment {args.experiment!r} at {args.base}")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"],
                              max_results=5000)
    parent = next(r for r in runs if r.data.tags.get("role") == "sweep"
                  and r.info.status == "FINISHED")
    cell = next(r for r in runs if r.data.tags.get("role") == "cell")
    args.out.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        open_runs(page, args.base, exp.experiment_id, args.out / "ui-runs.png")
        open_run_charts(page, args.base, exp.experiment_id, cell.info.run_id,
                        args.out / "ui-cell-charts.png")
        open_figure(page, args.base, exp.experiment_id, parent.info.run_id, "report/curves.png",
                    args.out / "ui-verdict-figure.png")
    print(f"wrote {args.out}/ui-runs.png, ui-cell-charts.png, ui-verdict-figure.png")


if __name__ == "__main__":
    main()
