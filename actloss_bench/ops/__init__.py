"""Operating servers and clusters: the MLflow server, a one-node Slurm cluster, the UI."""
