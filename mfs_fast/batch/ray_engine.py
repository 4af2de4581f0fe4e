"""The Ray engine: the batch's tasks on an actor pool of an existing Ray cluster (or a local one).

Each actor holds one :class:`~.work.SwapWorker` (a Swapper: weights and identity made once per
actor) and reserves ``threads`` CPUs, or ``gpus`` GPUs for the CUDA backends; the driver (this
process) schedules tasks onto idle actors, takes results back as they finish (``ray.wait``) and
writes the results log itself, so the manifest lives where the user started the batch. An actor that
dies (killed, out of memory, its node lost) shows up as a ``RayActorError`` for the task it held:
the task is retried (:meth:`~.driver.Driver.lost`) and a new actor takes its place.

Files are read and written by the actors at the paths the driver gives (absolute): on a cluster,
inputs and OUT_DIR must be on a file system every node mounts at the same path, and every node
needs the same mfs_fast installed (``pip install mfs_fast[ray]``). Ray is an optional extra.
"""

from __future__ import annotations

from ..errors import MfsError
from .driver import Driver
from .local import split_cores
from .work import Outcome, SwapSettings, SwapWorker, Task

_READY_TIMEOUT_S = 600.0


def import_ray():
    """The ``ray`` module, or an MfsError saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise MfsError(f"--engine ray needs Ray ({error}): pip install 'mfs_fast[ray]' (or 'ray>=2.9')") from None
    return ray


class _SwapActor:
    """A Ray actor around a SwapWorker; a worker that cannot start says why from :meth:`ready`."""

    def __init__(self, settings: SwapSettings, threads: int):
        self.worker, self.error = None, None
        try:
            self.worker = SwapWorker(settings, threads)
        except (MfsError, OSError) as error:
            self.error = str(error)

    def ready(self) -> str | None:
        return self.error

    def run(self, task: Task) -> Outcome:
        if self.worker is None:
            return Outcome(False, error=f"the worker could not start: {self.error}")
        return self.worker.run(task)


class RayEngine:
    """Runs a :class:`~.driver.Driver`'s tasks on Ray actors (see the module docstring).

    ``address``: a running cluster's ``HOST:PORT`` (None: ``RAY_ADDRESS``, else a local one with this
    machine's CPUs). ``actors``: how many (default: cluster CPUs / ``threads``, or cluster GPUs /
    ``gpus`` when actors take GPUs). ``threads``: CPUs each actor reserves and uses (default 1).
    """

    def __init__(self, settings: SwapSettings, address: str | None = None, actors: int | None = None,
                 threads: int | None = None, gpus: float = 0.0):
        self.ray = import_ray()
        self.settings, self.address, self.gpus = settings, address, gpus
        self.actors, self.threads = actors, threads
        self._started_ray = False

    def run(self, driver: Driver) -> None:
        ray = self.ray
        if not ray.is_initialized():
            options = {} if self.address else {"num_cpus": split_cores(None, None)[0]}
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False, **options)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise MfsError(f"cannot reach the Ray cluster {self.address or '(local)'}: {_first_line(error)}; "
                               f"start it with `ray start --head` or check --address HOST:PORT") from None
            self._started_ray = True
        try:
            self._run(driver)
        finally:
            if self._started_ray:
                ray.shutdown()

    def _size(self) -> tuple[int, int]:
        resources = self.ray.cluster_resources()
        threads = self.threads or 1
        if self.actors:
            return self.actors, threads
        if self.gpus:
            return max(1, int(resources.get("GPU", 0) // self.gpus)), threads
        return max(1, int(resources.get("CPU", 1) // threads)), threads

    def _run(self, driver: Driver) -> None:
        ray = self.ray
        count, threads = self._size()
        actor_class = ray.remote(_SwapActor).options(num_cpus=threads, num_gpus=self.gpus or 0, max_restarts=0)
        make = lambda: actor_class.remote(self.settings, threads)  # noqa: E731
        actors = [make() for _ in range(count)]
        try:
            errors = ray.get([actor.ready.remote() for actor in actors], timeout=_READY_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise MfsError(f"{count} Ray actor(s) of {threads} CPU(s){f' and {self.gpus} GPU(s)' if self.gpus else ''}"
                           f" did not start in {_READY_TIMEOUT_S:.0f} s: does the cluster have the resources?") from None
        error = next((e for e in errors if e), None)
        if error:
            raise MfsError(f"a batch worker could not start: {error}")
        idle, pending = list(range(count)), {}
        try:
            while driver.busy():
                while idle:
                    task = driver.next_task()
                    if task is None:
                        break
                    index = idle.pop()
                    pending[actors[index].run.remote(task)] = (index, task)
                if not pending:
                    raise RuntimeError("the batch driver is busy but has neither a task to give nor one running")
                finished, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in finished:
                    index, task = pending.pop(ref)
                    try:
                        driver.done(task, ray.get(ref))
                    except ray.exceptions.RayActorError as died:
                        driver.lost(task, f"Ray actor died: {_first_line(died)}")
                        actors[index] = make()
                    idle.append(index)
        finally:  # an interrupt or an error: stop every actor (the driver removes what they left)
            for actor in actors:
                ray.kill(actor)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
