"""The REST client without the engine, to split the engine's ceiling into client cost and
engine cost: N coroutines calling get_order in a loop (random ids of the data set, like the
engine), through the project's aiohttp client (`--mode client`) or bare aiohttp
(`--mode aiohttp`: one GET and body read, no decoding). Prints `BARE {json}`: requests/s
and this process's CPU % over the measured window.

Run: python -m bench.bare_client --url http://127.0.0.1:PORT --mode client --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time

import uvloop

ORDERS = 1000  # bench.measure.DATA: users × orders per user


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def drive(url: str, mode: str, users: int, warmup: float, duration: float) -> dict[str, float]:
    import aiohttp

    from targets.rest.client_aiohttp import connect

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000),
                                    auto_decompress=False)
    client = await connect(url, timeout=5)
    rng = random.Random(1)
    count = 0
    start = time.monotonic() + warmup
    end = start + duration

    async def user() -> None:
        nonlocal count
        while (now := time.monotonic()) < end:
            oid = rng.randint(1, ORDERS)
            if mode == "client":
                await client.get_order(oid)
            else:
                async with session.get(f"{url}/orders/{oid}") as resp:
                    await resp.read()
            if now >= start:
                count += 1

    async def window() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        c0 = cpu_s()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        return c0, cpu_s()

    try:
        w = asyncio.ensure_future(window())
        await asyncio.gather(*(user() for _ in range(users)))
        c0, c1 = await w
    finally:
        await client.close()
        await session.close()
    return {"rps": count / duration, "cpu": 100 * (c1 - c0) / duration}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--mode", choices=("client", "aiohttp"), default="client")
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=5.0)
    args = ap.parse_args()
    figures = uvloop.run(drive(args.url, args.mode, args.users, args.warmup, args.duration))
    print("BARE " + json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
