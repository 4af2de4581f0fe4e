"""The local engine: a pool of worker processes on this machine, each holding one Swapper.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies, every pending
future fails with ``BrokenProcessPool`` and nobody knows which task killed it. Here each worker has
its own pipe and holds one task at a time, so the driver knows exactly what a dead worker held
(retried, :meth:`~.driver.Driver.lost`) and starts a fresh worker in its place.

Workers are spawned (no forked torch state), ignore the terminal's Ctrl-C (the driver decides), and
turn SIGTERM into an interrupt, so a stopped worker removes its temporaries like ``mfs-fast swap``.
``workers`` x ``threads`` = the CPUs this process may use, unless given.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from ..errors import MfsError
from .driver import Driver
from .work import SwapSettings, SwapWorker, Task

_STOP_TIMEOUT_S = 20.0


def cpu_count() -> int:
    """CPUs this process may use (its affinity), which is what workers x threads should fill."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def split_cores(workers: int | None, threads: int | None, cores: int | None = None) -> tuple[int, int]:
    """(workers, threads per worker): by default one worker per core, so workers x threads = cores."""
    cores = cores or cpu_count()
    if workers is None:
        workers = max(1, cores // threads) if threads else cores
    return workers, threads or max(1, cores // workers)


def _serve(conn: Connection, settings: SwapSettings, threads: int) -> None:
    """A worker process: build the Swapper once, then swap each task the driver sends."""
    from ..signals import terminate_raises_interrupt

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the driver, which stops us with SIGTERM
    with terminate_raises_interrupt():
        try:
            worker = SwapWorker(settings, threads)
        except (MfsError, OSError) as error:
            conn.send(("fatal", str(error)))
            return
        except KeyboardInterrupt:
            return
        conn.send(("ready", None))
        while True:
            try:
                task = conn.recv()
            except (EOFError, KeyboardInterrupt):
                return
            if task is None:
                return
            try:
                conn.send(("done", worker.run(task)))
            except KeyboardInterrupt:
                return


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    task: Task | None = None


class LocalEngine:
    """Runs a :class:`~.driver.Driver`'s tasks on ``workers`` processes of ``threads`` threads each."""

    def __init__(self, settings: SwapSettings, workers: int | None = None, threads: int | None = None):
        self.settings = settings
        self.workers, self.threads = split_cores(workers, threads)
        self._context = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []
        self._failed_starts = 0

    def run(self, driver: Driver) -> None:
        """Until every task is done: feed idle workers, collect outcomes, replace dead workers."""
        try:
            self._pool = [self._start() for _ in range(self.workers)]
            while driver.busy():
                for worker in self._pool:
                    if worker.ready and worker.task is None:
                        worker.task = driver.next_task()
                        if worker.task is not None:
                            worker.conn.send(worker.task)
                if not driver.busy():
                    break
                waiting = [w.conn for w in self._pool] + [w.process.sentinel for w in self._pool]
                ready = set(wait(waiting, timeout=1.0))
                for worker in list(self._pool):
                    if worker.conn in ready or worker.process.sentinel in ready:
                        self._receive(worker, driver)
        finally:
            self._stop()

    def _start(self) -> _Worker:
        mine, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(theirs, self.settings, self.threads),
                                        name="mfs-batch-worker", daemon=True)
        process.start()
        theirs.close()
        return _Worker(process, mine)

    def _receive(self, worker: _Worker, driver: Driver) -> None:
        try:
            kind, payload = worker.conn.recv() if worker.conn.poll() else (None, None)
        except (EOFError, OSError):  # the worker is gone
            kind, payload = None, None
        if kind == "fatal":
            raise MfsError(f"a batch worker could not start: {payload}")
        if kind == "ready":
            worker.ready = True
        elif kind == "done":
            task, worker.task = worker.task, None
            driver.done(task, payload)
        elif not worker.process.is_alive():
            self._replace(worker, driver)

    def _replace(self, worker: _Worker, driver: Driver) -> None:
        """A worker died: its task is lost (retried by the driver), a fresh worker takes its place."""
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        worker.conn.close()
        if worker.task is not None:
            driver.lost(worker.task, reason)
        elif not worker.ready:
            self._failed_starts += 1
            if self._failed_starts > 2 * self.workers:
                raise MfsError(f"batch workers keep dying while starting ({reason}); run `mfs-fast doctor`")
        self._pool[self._pool.index(worker)] = self._start()

    def _stop(self) -> None:
        """Ask every worker to stop (SIGTERM: an interrupt there, so its unfinished output is removed),
        wait for them, and kill those that do not stop."""
        for worker in self._pool:
            if worker.process.is_alive():
                worker.process.terminate()
        for worker in self._pool:
            worker.process.join(timeout=_STOP_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._pool = []
