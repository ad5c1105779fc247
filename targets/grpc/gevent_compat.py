"""grpc.aio inside a gevent-patched process (a locust worker): the one set-up it needs.

Only ever called there (the registry's `gevent_setup` of the gRPC transport), so gevent is
imported lazily and the rest of the project never sees it.
"""

from __future__ import annotations

from collections.abc import Callable


async def prepare_grpc_aio() -> None:
    """Start grpc.aio's completion-queue poller in a native thread (run it on the bridge's
    loop before the first grpc.aio channel).

    grpc.aio polls its completion queue in a `threading.Thread`; under gevent's patching that
    is a greenlet of the asyncio thread, which never runs (the thread runs asyncio, not a
    gevent hub), so every call hangs. For the one moment grpc creates the poller, its module
    sees a `threading` whose Thread starts a real OS thread; the extra init reference keeps
    that poller for the life of the process.
    """
    from types import SimpleNamespace

    import gevent.monkey
    from grpc._cython import cygrpc

    start_native = gevent.monkey.get_original("_thread", "start_new_thread")

    class NativeThread:
        def __init__(self, target: Callable[[], None], daemon: bool = True) -> None:
            self._target = target

        def start(self) -> None:
            start_native(self._target, ())

    saved = cygrpc.threading
    cygrpc.threading = SimpleNamespace(Thread=NativeThread)
    try:
        cygrpc.init_grpc_aio()
    finally:
        cygrpc.threading = saved
