"""Render processes: programs' templates are compiled and rendered in child processes with a memory
limit, and a child that runs past its time is killed and replaced.

The budget of bounds.py gives the precise answers (422 naming the limit); this is the backstop for what
an in-process check cannot stop: one C-level step that runs long, an allocation that would take the
process's memory, a pathological source that is slow to parse. Whatever a template does, it costs at
most `timeout` seconds of one child and RENDER_MEMORY_BYTES of memory; the API and the worker go on.

Children are started from a fork server that has already imported the renderer (a replacement starts
in milliseconds) and serve one job at a time over a pipe: a function of this package and its arguments,
pickled. `run` blocks; the API calls it from its render threads (rendering.isolated), the worker from
its render thread.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import resource
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from service.messaging.bounds import RenderLimit

R = TypeVar("R")
RENDER_MEMORY_BYTES = 512 * 1024 * 1024  # address space a child may take beyond what it starts with


def _memory_in_use() -> int:
    """This process's address space (Linux), or 0 where it cannot be read."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _serve(jobs: Connection) -> None:
    """A child: take a job, answer (True, result) or (False, exception), until the pipe closes."""
    in_use = _memory_in_use()
    if in_use:  # past it, allocations fail with MemoryError: the job fails, the child lives on
        resource.setrlimit(resource.RLIMIT_AS, (in_use + RENDER_MEMORY_BYTES, resource.RLIM_INFINITY))
    while True:
        try:
            function, args = jobs.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[bool, Any] = (True, function(*args))
        except MemoryError:
            answer = (
                False,
                RenderLimit("memory", "over the render limit: more memory than a render may use"),
            )
        except BaseException as exc:  # the job's failure is its answer
            answer = (False, exc)
        try:
            jobs.send(answer)
        except Exception as exc:  # an answer that does not pickle
            jobs.send((False, RuntimeError(f"the render's answer could not be returned: {exc}")))


def _context() -> Any:
    if sys.platform == "linux":
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["service.messaging.service"])
        return context
    return multiprocessing.get_context("spawn")


class _Child:
    def __init__(self, context: Any) -> None:
        self.jobs, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs,), daemon=True, name="encore-render")
        self.process.start()
        theirs.close()

    def run(self, function: Callable[..., R], args: tuple[Any, ...], timeout: float) -> R:
        self.jobs.send((function, args))
        if not self.jobs.poll(timeout):
            raise TimeoutError
        ok, value = self.jobs.recv()
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.join(5)
        with contextlib.suppress(Exception):
            self.jobs.close()


class RenderProcesses:
    """At most `size` children, started when first needed; a job waits for an idle one."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._idle: queue.SimpleQueue[_Child | None] = queue.SimpleQueue()
        for _ in range(size):
            self._idle.put(None)  # a slot whose child is started on first use
        self._lock = threading.Lock()
        self._context: Any = None

    def run(self, function: Callable[..., R], *args: Any, timeout: float) -> R:
        """`function(*args)` in a child. A child that does not answer within `timeout` seconds, or dies,
        is killed and replaced; the job raises RenderLimit (cpu_time or memory)."""
        child = self._idle.get()
        try:
            if child is None:
                child = self._start()
            try:
                return child.run(function, args, timeout)
            except TimeoutError:
                child.kill()
                child = None
                raise RenderLimit(
                    "cpu_time", f"over the render limit: stopped after {timeout:g} s in the render process"
                ) from None
            except (EOFError, OSError):  # killed by the system (memory) or crashed
                child.kill()
                child = None
                raise RenderLimit(
                    "memory", "over the render limit: the render process stopped (more memory than allowed)"
                ) from None
        finally:
            self._idle.put(child)

    def _start(self) -> _Child:
        with self._lock:
            if self._context is None:
                self._context = _context()
        return _Child(self._context)

    def close(self) -> None:
        for _ in range(self.size):
            child = self._idle.get()
            if child is not None:
                child.kill()
            self._idle.put(None)


# One set per process: the API's render threads share it, so does the worker's sender.
RENDERERS = RenderProcesses(2)
