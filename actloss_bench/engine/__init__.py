"""The science: tasks, activations and heads, losses, the model, the training loop, metrics
and diagnostics. Nothing here talks to MLflow."""
