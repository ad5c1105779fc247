"""The harness forks servers while its gate's gRPC client is alive. With gRPC's fork support
on, a forked child that closes its descriptors before exec could abort (SIGABRT) on gRPC's
restarted poller thread: 2–4 of 300 forks did. harness/__init__.py turns it off; here, 300
forks with the launcher's preexec hook beside a live channel all exec cleanly."""
from __future__ import annotations

import asyncio
import os
import subprocess

import grpc

from harness.lifecycle import child_setup


def test_forks_beside_a_live_grpc_channel_never_abort() -> None:
    assert os.environ.get("GRPC_ENABLE_FORK_SUPPORT") == "false"

    async def forks() -> list[int]:
        channel = grpc.aio.insecure_channel("127.0.0.1:1")  # its poller runs while we fork
        try:
            try:
                await asyncio.wait_for(channel.channel_ready(), 0.2)
            except (TimeoutError, grpc.aio.AioRpcError):
                pass  # nothing listens there: the channel is alive all the same
            codes = []
            for _ in range(300):
                p = subprocess.run(["/bin/true"],
                                   preexec_fn=child_setup, capture_output=True, timeout=30)
                codes.append(p.returncode)
            return codes
        finally:
            await channel.close()

    codes = asyncio.run(forks())
    assert codes == [0] * 300, sorted(set(codes))
