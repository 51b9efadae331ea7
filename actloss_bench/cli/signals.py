"""SIGINT and SIGTERM in a job: recorded, never a half-written run.

Ctrl-C, ``scancel`` or ``kill`` stop training at once, but wait for the job's MLflow writes, so
no run is left 'running'; the job's run is recorded ``interrupted`` and the same command again
finishes it.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Optional


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM (``scancel``, ``kill``) in a job, so the job records itself as
    interrupted before it exits. A BaseException: Hydra and the sweep treat it as a stop, not
    as one failed job to note and pass over."""


class JobSignals:
    """SIGINT and SIGTERM during a job: raised at once while models train (``training()``);
    held while the job writes to MLflow and raised when it is done, so no run is left
    half-written (a run started but not finished would look as if it still ran)."""

    def __init__(self):
        self.pending: Optional[str] = None
        self.live = False

    def handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.live and self.pending is None:
            self.pending = name
            raise Interrupted(name)
        self.pending = self.pending or name  # e.g. Slurm signals srun and the job alike

    @contextmanager
    def training(self):
        if self.pending:
            raise Interrupted(self.pending)
        self.live = True
        try:
            yield
        finally:
            self.live = False

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():  # main thread only
            yield
            return
        previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if self.pending:  # held while the job finished writing: stop now
            raise Interrupted(self.pending)


class JobInterrupted(Exception):
    """Interrupted, as raised in a job process of its own (a Slurm or submitit job): an
    Exception there, so the launcher gets the job's error back and the sweep reports it, where
    a BaseException would leave the launcher waiting for a result that never comes."""


# The process that ran ``main`` (the basic launcher runs its jobs there: a signal stops the whole
# sweep), by pid in the environment that job processes inherit: launchers may pickle the task
# function with its module's globals, so a global would travel with it.
LAUNCHER_PID = "ACTLOSS_LAUNCHER_PID"
