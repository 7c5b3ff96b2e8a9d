"""A dask distributed cluster for the blocks of one volume (and the images of a run).

:func:`connect` opens a client to a scheduler address (or takes a client as given);
:class:`ClusterMapper` runs the per-block tasks of
:func:`~napari_niche.core.blockwise.distances_blockwise` on its workers, like the builtin
``map``. Only this module (and the runner, through :func:`connect`) imports
``distributed``: the science in ``core`` knows nothing of clusters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from napari_niche.core.errors import NicheError

__all__ = ["CONNECT_TIMEOUT", "ClusterMapper", "cluster_mapper", "connect"]

#: How long to wait for a scheduler before giving up (dask's duration syntax).
CONNECT_TIMEOUT = "20s"
#: Tasks kept waiting per worker thread beyond the one it runs: enough to keep every
#: worker busy, few enough that the blocks in flight do not pile up in memory.
_QUEUED_PER_THREAD = 1


def connect(scheduler: Any, *, timeout: str | None = None) -> tuple[Any, bool]:
    """A dask client for ``scheduler``, and whether it was opened here (to close it after).

    Parameters
    ----------
    scheduler : str or distributed.Client
        A scheduler address (``tcp://10.0.0.5:8786``) or a client, used as it is.
    timeout : str, optional
        How long to try the address; default :data:`CONNECT_TIMEOUT`.

    Returns
    -------
    client : distributed.Client
    own : bool
        True when the client was opened here.

    Raises
    ------
    NicheError
        Without dask's distributed package, or when no scheduler answers at the address.
    """
    try:
        from distributed import Client
    except ImportError:
        raise NicheError(
            "Running on a dask cluster needs dask's distributed package: "
            "pip install 'napari-niche[dask]'."
        ) from None
    if isinstance(scheduler, Client):
        return scheduler, False
    check_address(scheduler)
    try:
        # not the default: dask arrays read here (bioio, tifffile) keep their own threads
        client = Client(scheduler, timeout=timeout or CONNECT_TIMEOUT, set_as_default=False)
        return client, True
    except (OSError, TimeoutError, ValueError, TypeError) as err:
        message = " ".join(str(err).split()).rstrip(".")
        raise NicheError(f"Cannot reach the dask scheduler at {scheduler}: {message}.") from None


def check_address(scheduler: Any) -> None:
    """Refuse an address dask cannot parse, before a client is built for it.

    A client built for a malformed address fails, and its clean-up then waits for its
    own time-out (40 s) and prints a traceback: the address is checked first instead.

    Parameters
    ----------
    scheduler : str or distributed.Client
        The address (a client passes).

    Raises
    ------
    NicheError
        The address is no dask address (no port, an unknown scheme, not text).
    """
    try:
        from distributed import Client
        from distributed.comm.addressing import get_address_host_port, parse_address
    except ImportError:
        return  # connect() says what to install
    if isinstance(scheduler, Client):
        return

    if not isinstance(scheduler, str):
        raise NicheError(
            f"The dask scheduler must be an address such as tcp://10.0.0.5:8786, got "
            f"{type(scheduler).__name__}."
        )
    try:
        if parse_address(scheduler)[0] != "inproc":  # in-process clusters have no port
            get_address_host_port(scheduler)
    except ValueError as err:
        raise NicheError(
            f"Cannot reach the dask scheduler at {scheduler}: {err}; an address looks like "
            "tcp://10.0.0.5:8786."
        ) from None


def _call(function: Callable[[Any], Any], task: Any) -> Any:
    return function(task)


class ClusterMapper:
    """Run tasks on a dask cluster's workers, like ``map``: results in the tasks' order.

    The function (what every task shares: spacing, the random cells' shapes) is sent
    once to every worker; the tasks follow one by one, a few more than the workers'
    threads at a time, so a long list of blocks never waits in memory at once. Stopping
    early (an exception, Ctrl-C, closing the results) cancels the tasks not yet done.

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    """

    def __init__(self, client: Any) -> None:
        self.client = client

    @property
    def threads_per_worker(self) -> int:
        """The most threads any worker has: the blocks one worker process may run at once."""
        return max(self.client.nthreads().values(), default=1)

    def __call__(self, function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        """``function(task)`` for every task, run on the workers; results in order.

        Parameters
        ----------
        function : callable
            Picklable; sent once per worker.
        tasks : iterable
            Picklable tasks, taken lazily.

        Returns
        -------
        iterator
            The results, in the order of ``tasks``.
        """
        return self._results(function, tasks)

    def _results(self, function, tasks) -> Iterator[Any]:
        threads = sum(self.client.nthreads().values()) or 1
        limit = threads * (1 + _QUEUED_PER_THREAD)
        shared = self.client.scatter(function, broadcast=True, hash=False)
        running: deque = deque()
        try:
            for task in tasks:
                running.append(self.client.submit(_call, shared, task, pure=False))
                if len(running) >= limit:
                    yield _result(running.popleft())
            while running:
                yield _result(running.popleft())
        finally:
            self.client.cancel([*running, shared])


def _result(future: Any) -> Any:
    """A task's result; a worker lost or a task it could not run, as a NicheError."""
    try:
        return future.result()
    except NicheError:
        raise
    except Exception as err:  # noqa: BLE001 - KilledWorker, CommClosedError, pickling...
        raise NicheError(
            f"The dask cluster could not measure a block: {type(err).__name__}: {err}"
        ) from err


@contextmanager
def cluster_mapper(scheduler: Any | None):
    """A :class:`ClusterMapper` on ``scheduler`` (None: no mapper), closed after.

    Parameters
    ----------
    scheduler : str, distributed.Client or None
        As :func:`connect` takes it; a client given is left open.

    Yields
    ------
    ClusterMapper or None
    """
    if scheduler is None:
        yield None
        return
    client, own = connect(scheduler)
    try:
        yield ClusterMapper(client)
    finally:
        if own:
            client.close()
