"""Every experiment runs at a tiny size through Hydra into a temporary store, and the report
renders a verdict page for each from those real runs."""

import csv

import pytest

from actloss_bench.report.cli import experiment_names
from conftest import run_cli

pytestmark = pytest.mark.slow
TINY = ["trainer.epochs=1", "task.n_samples=200", "model.width=8", "tracking.log_plots=false"]


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp}/mlflow.db"
    names = experiment_names()
    for name in names:
        # One seed keeps it tiny (the files sweep three); verdicts then have no interval.
        run_cli("actloss-bench", "-m", f"experiment={name}", "seed=0", *TINY,
                f"tracking.uri={uri}", f"hydra.sweep.dir={tmp}/sweeps/{name}")
    proc = run_cli("actloss-report", "--all", "--uri", uri, "--out", str(tmp / "results"))
    return tmp / "results", names, proc.stdout


def test_index_lists_every_claim_with_a_computed_verdict(tiny_results):
    out, names, stdout = tiny_results
    index = (out / "README.md").read_text()
    for name in names:
        assert f"[{name}]({name}/README.md)" in index
    verdicts = [line.split(": ", 1)[1].split(" — ")[0] for line in stdout.splitlines()
                if line.split(":")[0] in names]
    assert len(verdicts) == len(names)
    assert all(v.startswith(("reproduced", "not reproduced", "depends")) for v in verdicts)


def test_each_page_has_claim_evidence_table_and_figures(tiny_results):
    out, names, _ = tiny_results
    for name in names:
        page = (out / name / "README.md").read_text()
        assert "## Verdict" in page and "## Evidence" in page and "| rule |" in page
        assert (out / name / "effect.png").stat().st_size > 1000
        assert (out / name / "curves.png").is_file()
        with open(out / name / "summary.csv") as f:
            rows = list(csv.DictReader(f))
        assert rows and all(int(r["n_runs"]) >= 1 for r in rows)


def test_report_names_unknown_experiment_in_one_line():
    proc = run_cli("actloss-report", "no_such_claim", check=False)
    assert proc.returncode == 2 and "no experiment 'no_such_claim'" in proc.stderr
