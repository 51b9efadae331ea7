"""Every experiment runs at a tiny size through Hydra into a temporary store, and the report
renders a verdict page for each from those real runs."""

import csv
import re

import pytest

from actloss_bench.config.paths import experiment_names
from actloss_bench.report.verdict import WORDS
from conftest import run_cli

pytestmark = pytest.mark.slow
TINY = ["trainer.epochs=2", "task.n_samples=200", "model.width=8", "seeds=3", "tune.seeds=1",
        "tune.max_extensions=0",
        "tune.lr_factors=[1.0,10.0]"]  # two learning rates: still a tuned and a default view


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    uri = f"sqlite:///{tmp}/mlflow.db"
    names = experiment_names()
    for name in names:
        # Three seeds keep it tiny (the files train ten); verdicts then are mostly inconclusive.
        run_cli("actloss-bench", "-m", f"experiment={name}", "seed=0", *TINY,
                f"tracking.uri={uri}", f"hydra.sweep.dir={tmp}/sweeps/{name}")
    proc = run_cli("actloss-report", "--all", "--uri", uri, "--out", str(tmp / "results"))
    return tmp / "results", names, proc.stdout


def test_index_lists_every_claim_with_a_computed_verdict(tiny_results):
    out, names, stdout = tiny_results
    index = (out / "README.md").read_text()
    for name in names:
        assert f"[{name}]({name}/README.md)" in index
    words = [line.split(": ", 1)[1].split(" (")[0] for line in stdout.splitlines()
             if line.split(":")[0] in names]
    assert len(words) == len(names)
    assert set(words) <= set(WORDS)


def test_each_page_has_claim_evidence_table_and_figures(tiny_results):
    out, names, _ = tiny_results
    for name in names:
        page = (out / name / "README.md").read_text()
        first = page.splitlines()[2]  # the plain sentence, right under the title
        assert first.startswith("**") and "parts hold" in first, first
        assert re.search(r"over \d+ (seeds|models)", first), first  # pooled rates: models
        assert "## Parts" in page and "## Evidence (tuned)" in page and "| part |" in page
        assert "## Decision rule" in page and "| metric family | margin |" in page
        figure = page.index("![")
        assert figure < page.index("## Evidence")  # the headline figure before the evidence
        assert (out / name / "effect.png").stat().st_size > 1000
        with open(out / name / "summary.csv") as f:
            rows = list(csv.DictReader(f))
        assert rows and all(int(r["models"]) == 3 for r in rows)


def test_report_names_unknown_experiment_in_one_line():
    proc = run_cli("actloss-report", "no_such_claim", check=False)
    assert proc.returncode == 2 and "no experiment 'no_such_claim'" in proc.stderr


def test_a_verdict_pools_one_definition_and_lists_what_it_left_out(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sweep = ["actloss-bench", "-m", "experiment=kl_vs_soft_ce", *TINY, f"tracking.uri={uri}"]
    run_cli(*sweep, "trainer.epochs=3", f"hydra.sweep.dir={tmp_path}/old")  # another definition
    run_cli(*sweep, f"hydra.sweep.dir={tmp_path}/new")
    resumed = run_cli(*sweep, f"hydra.sweep.dir={tmp_path}/again")  # same definition: reused
    assert resumed.stdout.count("[done]") == 2
    run_cli("actloss-report", "kl_vs_soft_ce", "--uri", uri, "--out", str(tmp_path / "out"))
    page = (tmp_path / "out" / "kl_vs_soft_ce" / "README.md").read_text()
    left_out = page.split("## Left out", 1)[1].split("##", 1)[0]
    # The old definition's two cells are left out and named; the reused cells are pooled.
    assert left_out.count("cell run(s) of sweep") == 1
    assert "2 cell run(s)" in left_out and "another definition" in left_out
    with open(tmp_path / "out" / "kl_vs_soft_ce" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["models"]) for r in rows] == [3, 3]  # never 6: no pooling across definitions
