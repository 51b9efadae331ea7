"""Where the project's folders are (the package is installed editable from the repository)."""

from pathlib import Path
from typing import List

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
RESULTS_DIR = PROJECT_ROOT / "results"


def experiment_names() -> List[str]:
    """The experiments, one per ``experiments/<name>.yaml`` (``_base.yaml`` is what they share)."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml") if not p.stem.startswith("_"))

# Real-data re-checks (make real) log into MLflow experiment <name><REAL_SUFFIX> of the store.
REAL_SUFFIX = "_real"
