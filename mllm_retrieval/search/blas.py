"""BLAS thread control for small products: one thread is faster there, and idle BLAS threads spinning
after a product slow the next step down (on 2 busy cores a 8x384 @ 384x1536 product took 23 ms on two
threads, 0.5 ms on one)."""

from __future__ import annotations

import contextlib
import functools


def one_thread():
    """A context in which numpy's BLAS runs on one thread (a no-op without threadpoolctl)."""
    controller = _controller()
    if controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=1)
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()
