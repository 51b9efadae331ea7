"""MLflow writes in a helper process, off the training's critical path.

A run's logging is ~25 metric values per epoch, params, tags, three artifacts and a figure.
Written in the training process that costs 10-40% of a tiny run (MLflow's SQLite store does
~60 us of ORM work per value; over HTTP each request costs tens of milliseconds of client and
server time; the figure ~0.2 s). Here the job pickles each message (microseconds) onto a pipe
and a writer process, usually on the otherwise idle second core, makes the MLflow calls in
order, with the same ``tracking.RunLogger`` the in-process path used. MLflow's own async
logging is a thread, which competes for the training's GIL; this does not.

Ordering and durability are those of the direct path: per run, start (params, tags, the config
artifact) -> epochs -> artifacts -> final metrics and the ``status`` tag -> terminated. The
writer prints a run's summary line once the run is written, so ``[ok] ... (run abc123)`` means
it is in the store. ``drain()`` waits until everything sent so far is written and returns what
failed. When the job's process dies, the writer sees end-of-file, stops, and leaves anything
unwritten for a resumed sweep to redo (a run without a final ``status`` tag is re-run, never
mistaken for a finished one).

    python -m actloss_bench.logwriter URI RESULT_FD [plots]   (started by LogWriter)
"""

from __future__ import annotations

import atexit

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None
import os
import pickle
import select
import struct
import subprocess
import sys
from dataclasses import dataclass
from itertools import count
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from actloss_bench import tracking

RUN_ID_MARK = "<run>"  # replaced by the run's id in a summary line
_FRAME = struct.Struct("<Q")  # each message: its length, then the pickle


@dataclass
class RunHandle:
    """The job's stand-in for a ``tracking.RunLogger`` whose calls run in the writer."""

    writer: "LogWriter"
    handle: int

    def log_epoch(self, step: int, values: Dict[str, float]) -> None:
        self.writer._send(("epoch", self.handle, step, values))

    def finish(self, *, status: str, metrics: Optional[Dict[str, float]] = None,
               tags: Optional[Dict[str, Any]] = None, artifacts: Optional[Dict[str, Any]] = None,
               step: int = 0, summary: Optional[str] = None) -> None:
        """As ``RunLogger.finish``; artifact writers must pickle (module-level functions or
        ``functools.partial`` of them). ``summary`` is printed once written, with
        ``RUN_ID_MARK`` replaced by the run id."""
        self.writer._send(("finish", self.handle, dict(status=status, metrics=metrics, tags=tags,
                                                       artifacts=artifacts, step=step), summary))


class LogWriter:
    """The job side: starts the writer process and writes messages straight into its pipe
    (enlarged to hold a few runs' worth, so the writer falling behind briefly never stalls
    training; a writer that stays behind slows the job down instead of growing a backlog)."""

    def __init__(self, uri: str, warm_plots: bool = False):
        self.uri = uri
        read_fd, write_fd = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "actloss_bench.logwriter", uri, str(write_fd),
             *(["plots"] if warm_plots else [])],
            stdin=subprocess.PIPE, pass_fds=(write_fd,))
        os.close(write_fd)
        self._pipe = self._proc.stdin.fileno()
        _enlarge_pipe(self._pipe)
        self._results = os.fdopen(read_fd, "rb")
        self._handles = count(1)
        self._syncs = count(1)
        self._broken: Optional[str] = None
        self.given_work = False  # anything but a sync sent yet

    def _send(self, message: Tuple) -> None:
        self.given_work = self.given_work or message[0] != "sync"
        # Pickled now, in the caller: later changes to the objects cannot leak into the log.
        blob = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        data = memoryview(_FRAME.pack(len(blob)) + blob)
        try:
            while data:
                data = data[os.write(self._pipe, data):]
        except OSError as e:  # the writer died; drain() reports it
            self._broken = f"log writer process exited ({type(e).__name__})"

    def start_run(self, experiment_id: str, *, run_name: str, params: Dict[str, str],
                  tags: Dict[str, Any], parent_run_id: Optional[str] = None,
                  supersedes: Sequence[Tuple[str, str]] = (),
                  flush_every_s: float = 2.0, last_step: Optional[int] = None,
                  artifacts: Optional[Dict[str, Any]] = None) -> RunHandle:
        """A new run; ``supersedes`` lists earlier attempts ``(run_id, state)`` to mark;
        ``last_step`` is the epoch it is expected to end at (that epoch's metrics then go out
        with ``finish``, in one request); ``artifacts`` (writers, as in ``finish``) are logged
        right away."""
        handle = next(self._handles)
        self._send(("start", handle, dict(experiment_id=experiment_id, run_name=run_name,
                                          params=params, tags=tags, parent_run_id=parent_run_id,
                                          flush_every_s=flush_every_s, last_step=last_step,
                                          artifacts=artifacts),
                    list(supersedes)))
        return RunHandle(self, handle)

    def drain(self) -> List[str]:
        """Block until everything sent so far is written; the errors met on the way."""
        token = next(self._syncs)
        self._send(("sync", token))
        errors: List[str] = []
        while True:
            try:
                reply = pickle.load(self._results)
            except (EOFError, OSError):
                errors.append(self._broken or "log writer process exited before writing "
                              "everything; a re-run will redo the unfinished jobs")
                return errors
            if reply[0] == "error":
                errors.append(reply[1])
            elif reply == ("synced", token):
                return errors

    def close(self) -> List[str]:
        if not self.given_work:
            # Started early and never needed (e.g. a resumed sweep with every job done): no
            # reason to wait for its warm-up imports (~2.6 s) before the process can exit.
            self._proc.kill()
            self._proc.wait(timeout=30)
        errors = self.drain() if self._proc.poll() is None else []
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._results.close()
        return errors


def _enlarge_pipe(fd: int, size: int = 1 << 20) -> None:
    """Linux: raise the pipe's capacity from 64 KiB (a finished run's message is ~100 KiB)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", 1031) if fcntl else None
    if set_size is None or not sys.platform.startswith("linux"):
        return
    for attempt in (size, 1 << 18):
        try:
            fcntl.fcntl(fd, set_size, attempt)
            return
        except OSError:  # above /proc/sys/fs/pipe-max-size: try smaller
            continue


_writers: Dict[str, LogWriter] = {}


def writer_for(uri: str, warm_plots: bool = False) -> LogWriter:
    """This process's writer for ``uri`` (started on first use, closed at exit); a writer
    started with ``warm_plots`` imports the figure code (matplotlib) while it waits."""
    if uri not in _writers:
        if not _writers:
            atexit.register(close_all)
        _writers[uri] = LogWriter(uri, warm_plots)
    return _writers[uri]


def drain_all() -> List[str]:
    """Wait for every writer of this process that was given anything to write; the errors
    met."""
    return [e for w in list(_writers.values()) if w.given_work for e in w.drain()]


def close_all() -> List[str]:
    errors = []
    while _writers:
        _, w = _writers.popitem()
        errors += w.close()
    for e in errors:  # at interpreter exit nobody else will say it
        print(f"actloss-bench: logging error: {e}", file=sys.stderr)
    return errors


# --- the writer process ------------------------------------------------------------------------

# Idle flushes to a tracking server are spaced so that requests keep it busy at most
# HTTP_FLUSH_DUTY of the time, and at most HTTP_FLUSH_MAX_WAIT_S apart. A server's cost is
# mostly per request, not per value: measured against a local MLflow server, 2,600 values took
# 1.05 s of server CPU as 100 requests and 0.27 s as 10; back to back, the server took a whole
# core from the jobs on a 2-core machine. Uncapped, the spacing grew with each (bigger, slower)
# batch until the last one, waited for at the end of a run, took 0.2-0.4 s; capped, ~0.1 s.
# What a run's end waits for is kept to three requests (predictions upload; the pending epochs,
# the held last epoch, test metrics and status tag in one batch; the run state): config.yaml
# goes up at the start and MLflow's URL print (a GET of the whole run) is off, which took the
# measured end-of-run wait from 0.105 s to ~0.07 s (benchmarks/README.md). A SQLite store's
# cost is per value (ORM inserts) and is paid by this process on its own core, so SQLite
# flushes stay back to back (duty 1.0, no cap): spacing them out (duty 0.3, or 0.15 with a
# 0.5 s cap) made no difference above the noise in paired rounds of `make bench`, where the
# SQLite share reads ~5% for one run and 4-6% for five.
HTTP_FLUSH_DUTY = 0.2
HTTP_FLUSH_MAX_WAIT_S = 0.1


def flush_spacing(uri: str) -> Tuple[float, float]:
    """(duty, max wait in seconds) of idle flushes for a tracking URI."""
    if uri.startswith(("http://", "https://")):
        return HTTP_FLUSH_DUTY, HTTP_FLUSH_MAX_WAIT_S
    return 1.0, float("inf")


def _frames(fd: int, on_idle: Callable[[], Optional[float]]) -> Iterator[bytes]:
    """Length-prefixed frames from ``fd``. Whenever none is waiting, ``on_idle()`` runs and
    says how long it may wait for input before it wants to run again (None: indefinitely):
    buffered metrics go out when the writer has nothing else to do."""
    buf = bytearray()
    while True:
        if len(buf) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(buf)
            if len(buf) >= _FRAME.size + size:
                frame = bytes(buf[_FRAME.size:_FRAME.size + size])
                del buf[:_FRAME.size + size]
                yield frame
                continue
        while not select.select([fd], [], [], 0)[0]:
            wait = on_idle()
            if select.select([fd], [], [], wait)[0]:
                break
        chunk = os.read(fd, 1 << 20)
        if not chunk:  # the job's process closed the pipe or died: stop here
            return
        buf += chunk


def _warm_up(plots: bool) -> None:
    """Import what writing a run needs before the first message asks for it (measured: MLflow
    ~1 s, the figure code ~1.6 s): the writer is started early, so this overlaps the job's own
    start instead of being waited for at the end of a short sweep. Modules only: opening the
    store here could race the launching process creating a fresh SQLite file."""
    import mlflow.entities  # noqa: F401
    import mlflow.tracking  # noqa: F401

    if plots:
        import actloss_bench.plots  # noqa: F401


def _serve(uri: str, results_fd: int, warm_plots: bool = False) -> None:
    _warm_up(warm_plots)
    spacing = flush_spacing(uri)
    results = os.fdopen(results_fd, "wb")
    loggers: Dict[int, tracking.RunLogger] = {}
    names: Dict[int, str] = {}

    def reply(message: Tuple) -> None:
        pickle.dump(message, results)
        results.flush()

    def report(handle: int, e: Exception) -> None:
        loggers.pop(handle, None)
        error = (f"run {names.get(handle, handle)} could not be logged to {uri} "
                 f"({type(e).__name__}: {str(e)[:300]}); a re-run will redo this job")
        print(f"[log-failed] {error}", file=sys.stderr, flush=True)
        reply(("error", error))

    def flush(handle: int, logger: tracking.RunLogger) -> None:
        try:
            logger.flush()
        except Exception as e:  # noqa: BLE001
            report(handle, e)

    def flush_due() -> Optional[float]:
        waits = []
        for handle, logger in list(loggers.items()):
            wait = logger.seconds_until_idle_flush(*spacing)
            if wait == 0:
                flush(handle, logger)
            elif wait is not None:
                waits.append(wait)
        return min(waits, default=None)

    def flush_all() -> None:
        for handle, logger in list(loggers.items()):
            flush(handle, logger)

    for frame in _frames(sys.stdin.fileno(), flush_due):
        try:
            message = pickle.loads(frame)
        except Exception as e:  # noqa: BLE001 - e.g. an artifact writer this process can't import
            reply(("error", f"a logging message could not be read ({type(e).__name__}: {e}); "
                            "its run stays unfinished and a re-run will redo it"))
            continue
        kind = message[0]
        if kind == "sync":
            flush_all()
            reply(("synced", message[1]))
            continue
        handle = message[1]
        try:
            if kind == "start":
                _, _, spec, supersedes = message
                names[handle] = spec["run_name"]
                loggers[handle] = logger = tracking.RunLogger.start(uri, **spec)
                if supersedes:
                    tracking.supersede(uri, supersedes, logger.run_id)
            elif handle not in loggers:
                continue  # its start failed, and that was reported
            elif kind == "epoch":
                loggers[handle].log_epoch(message[2], message[3])
            elif kind == "finish":
                _, _, finish, summary = message
                logger = loggers.pop(handle)
                logger.finish(**finish)
                if summary:
                    print(summary.replace(RUN_ID_MARK, logger.run_id[:8]), flush=True)
        except Exception as e:  # noqa: BLE001 - reported to the job, which decides
            report(handle, e)


if __name__ == "__main__":
    # MLflow prints each finished run's URL, fetching the whole run (a GET of every latest
    # metric, param and tag) to do so: measured ~10 ms per run on a local server, waited for at
    # the end of every run. The job's own summary line names the run.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    _serve(sys.argv[1], int(sys.argv[2]), warm_plots=sys.argv[3:] == ["plots"])
