"""``actloss-report [NAME ... | --all]``: verdict pages for experiments, and the index.

A page keeps every section whether one experiment or all are reported: the real-data section
is read from the store (``make real``), the index is rewritten by ``--all`` only.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Dict, List, Optional

from actloss_bench.config.paths import PROJECT_ROOT, RESULTS_DIR, experiment_names
from actloss_bench.report import build, render
from actloss_bench.report.claims import write_claims_page
from actloss_bench.report.publish import publish
from actloss_bench.tracking.store import TrackingError, check_store, resolve_uri

DEFAULT_URI = "sqlite:///results/mlflow.db"
CLAIMS_PAGE = PROJECT_ROOT / "docs" / "claims.md"


def report_experiment(name: str, uri: str, out_dir: Path) -> Dict[str, str]:
    """Compute, draw, write and publish one experiment's page; its index entry."""
    report = build.compute(name, uri)
    page_dir = out_dir / name
    page_dir.mkdir(parents=True, exist_ok=True)
    if report.table.models.empty:
        (page_dir / "README.md").write_text(render.not_run_page(report, uri))
        return render.not_run_entry(report)
    made = build.draw(report, page_dir)
    report.summary.to_csv(page_dir / "summary.csv", index=False)
    (page_dir / "README.md").write_text(render.experiment_page(report, made))
    entry = render.index_entry(report)
    publish(report, entry, page_dir)
    return entry


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="actloss-report",
        description="Compute verdicts from MLflow runs and write <out>/<name>/README.md.")
    parser.add_argument("names", nargs="*", help="experiment names (experiments/<name>.yaml)")
    parser.add_argument("--all", action="store_true", help="every experiment, and the index")
    parser.add_argument("--uri", default=DEFAULT_URI, help=f"tracking URI (default {DEFAULT_URI})")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="experiments reported at once (default: one per core)")
    args = parser.parse_args(argv)
    if not args.names and not args.all:
        parser.error("name at least one experiment, or --all")
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} is not allowed; it must be an integer >= 1")
    names = experiment_names() if args.all else args.names
    for n in names:
        if n not in experiment_names():
            parser.error(f"no experiment {n!r}; choose from: {', '.join(experiment_names())}")
    uri = resolve_uri(args.uri)
    if not uri.startswith(("sqlite:///", "http://", "https://", "postgresql", "mysql",
                           "file:")):
        parser.error(f"--uri {args.uri} is not a tracking URI; use sqlite:///path/mlflow.db, "
                     f"http://host:port or a database URL")
    try:
        check_store(uri)
    except TrackingError as e:
        parser.error(str(e))
    entries = []
    # Experiments are independent: one process per core (the bootstrap, the permutation tests
    # and the figures are CPU-bound), results printed in order.
    with ProcessPoolExecutor(max_workers=min(args.jobs, len(names))) as pool:
        for n, entry in zip(names, pool.map(report_experiment, names, repeat(uri),
                                            repeat(args.out))):
            print(f"{n}: {entry['word']} ({entry['parts']}) {entry['effect']}".rstrip())
            entries.append(entry)
    for n in names:
        print(f"wrote {args.out / n / 'README.md'}")
    if args.all:
        (args.out / "README.md").write_text(render.index_page(entries))
        print(f"wrote {args.out / 'README.md'}")
        if args.out.resolve() == RESULTS_DIR.resolve():  # the committed catalogue's words
            write_claims_page(CLAIMS_PAGE, {e["name"]: e["word"] for e in entries})
            print(f"wrote {CLAIMS_PAGE}")


if __name__ == "__main__":
    sys.exit(main())
