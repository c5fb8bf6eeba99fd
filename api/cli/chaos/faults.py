"""The faults `ledgerq chaos` injects into its own stack, and the supervisor that restarts
what they kill (as supervisord does under `ledgerq up`).

Every fault is transient: after it, the stack must recover by itself, with nothing lost,
doubled or dead-lettered. Only this run's own processes, its own embedded Redis and its
own database's connections are ever touched.
"""

from __future__ import annotations

import contextlib
import queue
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psutil

from api.cli.bench.stack import Stack
from db.ops.embedded import EmbeddedRedis


class OwnRedis:
    """An embedded Redis on a fixed port that can be restarted and flushed: the run's
    own, never a shared server.

    Restarts happen on one keeper thread that lives as long as the run: the server dies
    with the thread that started it (PR_SET_PDEATHSIG follows the thread, not the
    process), so one started from a short-lived fault thread was gone with it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._requests: queue.Queue[float | None] = queue.Queue()
        self._done: queue.Queue[BaseException | None] = queue.Queue()
        self._keeper = threading.Thread(target=self._keep, daemon=True)
        self._keeper.start()
        failure = self._done.get()
        if failure is not None:
            raise failure
        self.port = self.server.port
        self.url = self.server.url

    def _keep(self) -> None:
        try:
            self.server = EmbeddedRedis(self.data_dir)
            self._done.put(None)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            self._done.put(error)
            return
        while (down_for := self._requests.get()) is not None:
            try:
                self.server.stop()
                time.sleep(down_for)
                self.server = EmbeddedRedis(self.data_dir, port=self.port)
                self._done.put(None)
            except BaseException as error:  # noqa: BLE001
                self._done.put(error)
        self.server.stop()

    def restart(self, down_for: float) -> None:
        self._requests.put(down_for)
        failure = self._done.get()
        if failure is not None:
            raise failure

    def flushall(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        self._requests.put(None)
        self._keeper.join(30)


class Supervisor(threading.Thread):
    """Restarts any process of the stacks that exited (a Dramatiq group exits when one of
    its workers dies)."""

    def __init__(self, stacks: list[Stack]) -> None:
        super().__init__(daemon=True)
        self.stacks = stacks
        self.restarts: Counter[str] = Counter()
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            with self.lock:
                for stack in self.stacks:
                    for name, proc in list(stack.processes.items()):
                        if proc.poll() is not None:
                            self.restarts[name] += 1
                            stack.start(name)

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)


class Faults(threading.Thread):
    """Every `interval` seconds, one fault drawn at random from `kinds`."""

    KINDS = ("kill_worker", "stop_worker", "restart_redis", "flush_redis", "terminate_connections")

    def __init__(
        self,
        stack: Stack,
        redis: OwnRedis,
        terminate_connections: Callable[[], int],
        *,
        interval: float,
        heartbeat_s: float,
        seed: int,
    ) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.redis = redis
        self._terminate = terminate_connections
        self.interval = interval
        self.heartbeat_s = heartbeat_s
        self.rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()  # faults that could not be injected, and why
        self.stopped = threading.Event()
        self._paused: list[psutil.Process] = []
        self._side: list[threading.Thread] = []

    def workers(self) -> list[psutil.Process]:
        return [
            proc
            for label, proc in self.stack.labelled()
            if label.startswith("worker.") and label != "worker.metrics"
        ]

    def run(self) -> None:
        while not self.stopped.wait(self.interval * self.rng.uniform(0.5, 1.5)):
            kind = self.rng.choice(self.KINDS)
            try:
                if getattr(self, kind)():
                    self.injected[kind] += 1
            except Exception as error:  # noqa: BLE001 - reported, and the run goes on
                self.errors[f"{kind}: {type(error).__name__}: {str(error)[:120]}"] += 1

    def kill_worker(self) -> bool:
        workers = self.workers()
        if not workers:
            return False
        self.rng.choice(workers).send_signal(signal.SIGKILL)
        return True

    def stop_worker(self) -> bool:
        """SIGSTOP past the heartbeat timeout (its messages are requeued to the others
        meanwhile), then SIGCONT: the frozen worker resumes what it was doing."""
        workers = self.workers()
        if not workers:
            return False
        victim = self.rng.choice(workers)
        victim.send_signal(signal.SIGSTOP)
        self._paused.append(victim)

        def resume() -> None:
            self.stopped.wait(self.heartbeat_s + 2)
            with contextlib.suppress(psutil.Error):
                victim.send_signal(signal.SIGCONT)

        thread = threading.Thread(target=resume, daemon=True)
        thread.start()
        self._side.append(thread)
        return True

    def restart_redis(self) -> bool:
        self.redis.restart(down_for=self.rng.uniform(0.5, 2.0))
        return True

    def flush_redis(self) -> bool:
        self.redis.flushall()
        return True

    def terminate_connections(self) -> bool:
        return self._terminate() > 0

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)
        for thread in self._side:
            thread.join(30)
        for proc in self._paused:  # never leave a frozen worker behind
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)
