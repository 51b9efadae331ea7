"""The typed configuration: schemas, checks of overrides before Hydra, paths, the memory
estimate."""
