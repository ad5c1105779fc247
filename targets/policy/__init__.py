"""Resilience policies on the synchronous chain's hops (REST and gRPC): per-attempt timeouts
with deadline propagation, retries under a retry budget, a circuit breaker and a bulkhead per
downstream, and shedding at the edge. `config` is the value the harness hands the edge
(`--policies JSON`), `guard` applies it around each downstream call, `events` counts what
the policies did for the harness to poll over the control socket (targets/control.py)."""
