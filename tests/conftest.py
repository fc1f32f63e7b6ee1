"""Shared test setup."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_worker_outlives_its_test():
    """A napari thread worker still running at interpreter exit aborts the process: wait for all of them."""
    yield
    try:
        from napari.qt.threading import WorkerBase
    except ImportError:  # no Qt in this environment: nothing can be running
        return
    WorkerBase.await_workers(msecs=60_000)
