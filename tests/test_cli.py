"""Bad input on the command line: one clear line (or click's usage block), exit 2, never a
traceback; and a target that cannot be reached fails fast with one reason."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest


def commbench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    "args, message",
    [
        (["verify", "--targets", "rest,soap"],
         "unknown target 'soap'; known targets: rest, grpc, queue, eventsourced"),
        (["verify", "--url", "rest"], "--url takes NAME=VALUE"),
        (["verify", "--targets", "rest", "--client", "rest=curl"], "has no client 'curl'"),
        (["verify", "--targets", "rest", "--url", "grpc=127.0.0.1:1"], "--url names 'grpc', which is not in"),
        (["verify", "--targets", "queue", "--amqp-url", "notaurl"], "'notaurl' is not a broker URL"),
        (["verify", "--targets", "rest", "--logs", "/proc/commbench/x"], "cannot write the log"),
        (["run", "scenarios/quick.toml", "--targets", "rest", "--results-dir", "/proc/commbench/x"],
         "--results-dir /proc/commbench/x: cannot write results there"),
        (["serve", "smtp"], "unknown target 'smtp'"),
        (["serve", "rest", "--store", "postgres"], "unknown store 'postgres'"),
        (["serve", "rest", "--store", "sqlite:/nonexistent/dir/x.db"], "cannot open the SQLite store"),
        (["serve", "queue", "--amqp-url", "http://example/"], "is not a broker URL"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    proc = commbench(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "COMMAND [ARGS]..."),
        (["bogus"], "No such command 'bogus'"),
        (["run"], "Missing argument"),
        (["run", "quick", "--rate", "abc"], "Invalid value for '--rate'"),
        (["--foo"], "No such option: --foo"),
        (["serve", "rest", "--port", "70000"], "Invalid value for '--port'"),
        (["compare", "a"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args: list[str], message: str) -> None:
    proc = commbench(*args)
    assert proc.returncode == 2
    assert message in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_target_fails_fast_with_one_reason(tmp_path: Path) -> None:
    with socket.socket() as held:  # bound, not listening: connections are refused
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        proc = commbench("verify", "--targets", "rest", "--client", "rest=aiohttp",
                         "--url", f"rest=http://127.0.0.1:{port}", "--logs", str(tmp_path))
    assert proc.returncode == 1
    assert "reach the target" in proc.stdout and "not run" in proc.stdout
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1 and "refused" in failures[0]


def broker_url(url: str, *, password: str | None = None, vhost: str | None = None) -> str:
    """The suite's broker URL (the `amqp_url` fixture: the system broker, or the private
    one the suite started on a fresh machine) with another password or vhost."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc,
                                     path=parts.path if vhost is None else f"/{vhost}"))


@pytest.mark.broker
def test_a_refused_login_is_reported_not_replaced_by_a_private_broker(amqp_url: str) -> None:
    proc = commbench("verify", "--targets", "queue", "--amqp-url",
                     broker_url(amqp_url, password="wrong"))
    assert proc.returncode == 2
    assert "refused the login (ACCESS_REFUSED): check the user and password" in proc.stderr
    assert "wrong" not in proc.stderr  # the password is masked
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_the_broker_url_never_reaches_a_servers_command_line() -> None:
    from harness.stage.launcher import serve_command
    from targets.serving import ServeConfig

    argv = serve_command("queue", ServeConfig(amqp_url="amqp://u:s3cret@127.0.0.1:5672/"))
    assert not any("s3cret" in a for a in argv)  # ps would show it; it travels in the environment


@pytest.mark.broker
def test_a_run_refused_by_the_broker_leaves_no_result_folder(tmp_path: Path, amqp_url: str) -> None:
    proc = commbench("run", "scenarios/quick.toml", "--targets", "queue", "--results-dir", str(tmp_path),
                     "--amqp-url", broker_url(amqp_url, password="wrong"))
    assert proc.returncode == 2 and "refused the login" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing that looks like a run


def test_shipped_scenarios_are_found_from_any_folder(tmp_path: Path) -> None:
    """`commbench run quick` outside the repository's folder: the name is looked up among the
    shipped scenarios after the (missing) local `scenarios/`, and `scenarios` lists them."""
    from harness.scenario.files import BUNDLED

    def elsewhere(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)

    listed = elsewhere("scenarios")
    assert listed.returncode == 0, listed.stderr
    shipped = sorted(p.stem for p in BUNDLED.glob("*.toml"))
    assert [line.split()[0] for line in listed.stdout.splitlines()] == shipped
    seeded = elsewhere("seed", "--scenario", "quick", "--out", "seed.jsonl")
    assert seeded.returncode == 0, seeded.stderr
    assert (tmp_path / "seed.jsonl").read_text().count("\n") == 100 * 10  # quick's [data]
    missing = elsewhere("run", "nosuch")
    assert missing.returncode == 2 and "not in scenarios/ or " in missing.stderr
    assert "quick" in missing.stderr
