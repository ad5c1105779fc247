"""`commbench serve` for the flow's roles: bad input is one line and exit 2, and the launcher
passes a config's role, topology, hop timeout and downstreams on intact."""

from __future__ import annotations

import pytest

from harness.stage.launcher import serve_command
from targets.serving import ServeConfig, parse_downstream
from tests.test_cli import commbench


@pytest.mark.parametrize(
    "args, message",
    [
        (["serve", "rest", "--role", "notification"],
         "rest serves the roles order, payment, inventory, not 'notification'"),
        (["serve", "grpc", "--role", "billing"], "not 'billing'"),
        (["serve", "rest", "--topology", "mesh"], "unknown topology 'mesh'; choose one of: single, chain"),
        (["serve", "rest", "--downstream", "payment"], "--downstream takes ROLE=URL, got 'payment'"),
        (["serve", "rest", "--downstream", "bank=http://x"], "unknown downstream role 'bank'"),
        (["serve", "rest", "--topology", "chain"], "the chain edge needs --downstream payment=URL"),
        (["serve", "grpc", "--topology", "chain", "--downstream", "payment=grpc://127.0.0.1:1"],
         "the chain edge needs --downstream inventory=URL"),
    ],
)
def test_bad_flow_options_are_one_line(args: list[str], message: str) -> None:
    proc = commbench(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_launcher_passes_the_flow_options() -> None:
    config = ServeConfig(role="order", topology="chain", hop_timeout_s=0.25,
                         downstreams=(("payment", "http://127.0.0.1:1"), ("inventory", "http://h:2")))
    argv = serve_command("rest", config)
    tail = argv[argv.index("--role"):]
    assert tail == ["--role", "order", "--topology", "chain", "--hop-timeout", "0.25",
                    "--downstream", "payment=http://127.0.0.1:1",
                    "--downstream", "inventory=http://h:2"]
    assert parse_downstream(" payment = http://a:1 ") == ("payment", "http://a:1")
    assert serve_command("rest", ServeConfig())[-6:] == [
        "--role", "order", "--topology", "single", "--hop-timeout", "2.0"]
