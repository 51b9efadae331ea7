"""The naive baseline: one model trained the way a tutorial does it, as a whole process.

    python benchmarks/tutorial.py SEED EPOCHS [URI]

``TensorDataset`` + ``DataLoader(shuffle=True)``, ``loss.item()`` every step, an extra pass over
the validation split each epoch, and (given URI) ``mlflow.log_metric`` for each epoch's train
and validation loss. Same data, MLP and optimiser as the bench's workload
(benchmarks/run.py: WORKLOAD).
"""

from __future__ import annotations

import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

from actloss_bench.engine.model import MLP
from actloss_bench.engine.tasks import make_dataset


def train_one(task_cfg, seed: int, epochs: int, *, depth: int, width: int, batch_size: int,
              log=None) -> int:
    """Train one model; returns the number of optimiser steps."""
    data = make_dataset(task_cfg, seed)
    torch.manual_seed(seed)
    model = MLP(data.n_features, 1, depth=depth, width=width, activation="relu", head="linear")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    train = DataLoader(TensorDataset(data.X_train, data.y_train.float()[:, None]),
                       batch_size=batch_size, shuffle=True)
    val = DataLoader(TensorDataset(data.X_val, data.y_val.float()[:, None]),
                     batch_size=batch_size)
    steps = 0
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for x, y in train:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
        model.eval()
        with torch.no_grad():
            val_loss = sum(loss_fn(model(x), y).item() for x, y in val) / len(val)
        if log is not None:
            log("train_loss", total / len(train), epoch)
            log("val_loss", val_loss, epoch)
    return steps


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from run import WORKLOAD, task_config

    seed, epochs = int(sys.argv[1]), int(sys.argv[2])
    log = None
    if len(sys.argv) > 3:
        import mlflow

        mlflow.set_tracking_uri(sys.argv[3])
        mlflow.set_experiment("tutorial")
        mlflow.start_run()
        log = lambda k, v, step: mlflow.log_metric(k, v, step=step)  # noqa: E731
    train_one(task_config(), seed, epochs, depth=WORKLOAD["depth"],
              width=WORKLOAD["width"], batch_size=WORKLOAD["batch_size"], log=log)
    if log is not None:
        mlflow.end_run()
