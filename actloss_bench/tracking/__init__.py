"""Everything that writes to MLflow: the store, the job's runs, sweeps, artifacts."""
