"""Runs that never finished: found, reported, finalised or removed.

A run killed by a signal it can catch finalises itself. SIGKILL (or a crash of the machine)
cannot be caught, so a run leaves what a later command needs to finish it: its
`.partial-<run-id>/run.json` says `running` and names the writing process (pid, start
time, host), and `broker-namespaces.jsonl` lists every broker namespace and PostgreSQL
schema the run created, each written before the target that uses it starts. A `.partial-`
folder whose process is gone is *abandoned*: `commbench run` reports it, `commbench clean`
finalises it (status `partial`, the target being measured `interrupted`, the file manifest
written, the folder renamed as a finished run would be) or removes it, and deletes its
namespaces on the broker and its schemas on PostgreSQL (`--store`) either way, since no run
will use them again.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.run.results import RUNNING, manifest, move_to_final, utc_iso, write_json
from targets.redact import redact

MARKER = "broker-namespaces.jsonl"
YOUNG_S = 30.0  # a folder without run.json younger than this may be a run starting now
KILLED = ("the run was killed while measuring it (SIGKILL or a crash: nothing could catch "
          "it); finalised by `commbench clean` from what it had written")


def record_namespace(folder: Path, namespace: str, broker_url: str, private: bool) -> None:
    """Note a namespace before its target starts (one JSON line; the password masked)."""
    line = json.dumps({"namespace": namespace, "broker": redact(broker_url), "private": private})
    with open(folder / MARKER, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def record_schema(folder: Path, store_url: str, schema: str) -> None:
    """Note a PostgreSQL schema before its target's server creates it (the URL masked)."""
    with open(folder / MARKER, "a", encoding="utf-8") as f:
        f.write(json.dumps({"schema": schema, "store": redact(store_url)}) + "\n")


def namespaces_deleted(folder: Path) -> None:
    """The run deleted its namespaces and schemas itself: nothing is left for `clean`."""
    with contextlib.suppress(OSError):
        (folder / MARKER).unlink(missing_ok=True)


def recorded_namespaces(folder: Path, key: str = "namespace") -> list[dict[str, Any]]:
    """The recorded broker namespaces (or, with key="schema", PostgreSQL schemas)."""
    out = []
    with contextlib.suppress(OSError):
        for line in (folder / MARKER).read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get(key):
                    out.append(entry)
    return out


@dataclass
class Abandoned:
    """A `.partial-` folder whose run is gone."""

    folder: Path
    context: dict[str, Any]  # its run.json as last written ({} when there is none)
    why: str
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    schemas: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.context.get("run_id") or self.folder.name.removeprefix(".partial-"))


def find(results_dir: Path) -> list[Abandoned]:
    """Every `.partial-` folder in `results_dir` whose writing process is gone."""
    out = []
    if not results_dir.is_dir():
        return out
    for folder in sorted(results_dir.glob(".partial-*")):
        if folder.is_dir() and (why := _gone(folder)) is not None:
            context = _context(folder)
            out.append(Abandoned(folder, context, why, recorded_namespaces(folder),
                                 recorded_namespaces(folder, "schema")))
    return out


def _context(folder: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def _gone(folder: Path) -> str | None:
    """Why the folder's run is gone, or None while it may still be running."""
    context = _context(folder)
    proc = context.get("process")
    if not context:
        if time.time() - folder.stat().st_mtime < YOUNG_S:
            return None
        return "no readable run.json (an older commbench, or killed as it started)"
    if context.get("status") != RUNNING:  # run.json was final: killed while renaming
        return "its run.json is final but the folder was never renamed"
    if not isinstance(proc, dict):
        return "its run.json names no process"
    if proc.get("host") != socket.gethostname():
        return None  # written on another machine: its process cannot be judged from here
    import psutil

    try:
        started = psutil.Process(int(proc["pid"])).create_time()
    except (psutil.Error, KeyError, TypeError, ValueError):
        return f"process {proc.get('pid')} is gone"
    if abs(started - float(proc.get("started") or 0)) > 1.0:
        return f"process {proc.get('pid')} is gone (the pid now belongs to another process)"
    return None


def describe(a: Abandoned) -> str:
    """One line: where, why, what it measured, what it left on a broker."""
    targets = [f"{t.get('name')} r{t.get('repetition', 1)} "
               f"{'killed while measuring' if t.get('status') == RUNNING else t.get('status')}"
               for t in a.context.get("targets") or [] if isinstance(t, dict)]
    parts = [f"abandoned run {a.folder} ({a.why})",
             "targets: " + (", ".join(targets) if targets else "none measured")]
    shared = [n for n in a.namespaces if not n.get("private")]
    if shared:
        parts.append(f"{len(shared)} broker namespace(s) on {shared[0].get('broker')}")
    if a.schemas:
        parts.append(f"{len(a.schemas)} PostgreSQL schema(s) on {a.schemas[0].get('store')}")
    return "; ".join(parts)


def delete_namespaces(a: Abandoned, amqp_url: str) -> list[str]:
    """Delete the run's namespaces on their broker when `amqp_url` reaches it; a line each."""
    from harness.stage.broker import delete_namespace

    lines, a.namespaces = _delete_each(a.namespaces, ("namespace", "broker"), amqp_url,
                                       delete_namespace, ("delete", "deleted", "broker namespace",
                                                          "--amqp-url"))
    return lines


def drop_schemas(a: Abandoned, store_url: str | None) -> list[str]:
    """Drop the run's PostgreSQL schemas when `store_url` reaches their server; a line each."""
    from harness.stage.postgres import drop_schema

    lines, a.schemas = _delete_each(a.schemas, ("schema", "store"), store_url, drop_schema,
                                    ("drop", "dropped", "PostgreSQL schema", "--store"))
    return lines


def _delete_each(entries: list[dict[str, Any]], keys: tuple[str, str], url: str | None,
                 delete: Callable[[str, str], bool], words: tuple[str, str, str, str],
                 ) -> tuple[list[str], list[dict[str, Any]]]:
    """(a line each, the entries left) after deleting each entry on the server `url` names,
    when it is the server the entry was recorded on (compared with the password masked)."""
    (name_key, server_key), (verb, done, noun, option) = keys, words
    lines, left = [], []
    for entry in entries:
        if entry.get("private"):
            continue  # a private server stops with its run: nothing of it is left
        name, server = str(entry[name_key]), str(entry.get(server_key))
        if url is None or redact(url) != server:
            lines.append(f"{noun} {name} is on {server}: pass that URL as {option} to {verb} it")
            left.append(entry)
        elif delete(url, name):
            lines.append(f"{done} {noun} {name} on {server}")
        else:
            lines.append(f"could not {verb} {noun} {name} on {server} (not reachable)")
            left.append(entry)
    return lines, left


def finalise(a: Abandoned) -> Path:
    """Turn an abandoned folder into a partial run, as a caught signal would have."""
    ctx = dict(a.context)
    if ctx.get("format") is None or not ctx.get("scenario"):
        raise UserError(f"{a.folder}: no run.json describing the run, nothing to finalise "
                        "from; remove it instead")
    notes = [f"{p.relative_to(a.folder)}: its last line was cut when the run was killed and "
             "was dropped" for p in _data_files(a.folder) if _drop_cut_line(p)]
    targets = []
    for t in ctx.get("targets") or []:
        t = dict(t)
        if t.get("status") == RUNNING:
            t["status"], t["error"] = "interrupted", KILLED
            t["measured_s"] = _measured_seconds(a.folder, t)
        targets.append(t)
    ctx.update(status="partial", targets=targets, ended_at=utc_iso(a.folder.stat().st_mtime),
               files=manifest(a.folder))
    ctx.pop("process", None)
    ctx["warnings"] = [*(ctx.get("warnings") or []),
                       f"the run's process was gone ({a.why}); finalised by `commbench clean` "
                       "from the files it had written", *notes]
    write_json(a.folder / "run.json", ctx)
    return move_to_final(a.folder.parent, a.folder, a.run_id)


def remove(a: Abandoned) -> None:
    shutil.rmtree(a.folder)


def clean(results_dir: Path, amqp_url: str, action: str | None,
          ask: Callable[[Abandoned], str] | None, say: Callable[[str], None],
          store_url: str | None = None) -> int:
    """`commbench clean`: report every abandoned run, then finalise, remove or keep each
    (`action`, else `ask`'s answer; neither: only report). Exit code 0, or 1 when something
    could not be done."""
    found = find(results_dir)
    if not found:
        say(f"no abandoned runs in {results_dir}")
        return 0
    code = 0
    for a in found:
        say(describe(a))
        act = action or (ask(a) if ask is not None else "keep")
        if act == "keep":
            continue
        for line in [*delete_namespaces(a, amqp_url), *drop_schemas(a, store_url)]:
            say(f"  {line}")
        if a.namespaces or a.schemas:  # its record is the only trace of them: keep the folder
            say(f"  kept {a.folder}: {len(a.namespaces) + len(a.schemas)} namespace(s) or "
                "schema(s) are still there (delete them as said above, or remove the folder "
                "yourself)")
            code = 1
            continue
        namespaces_deleted(a.folder)
        try:
            if act == "finalise":
                say(f"  finalised as {finalise(a)} (status partial)")
            else:
                remove(a)
                say(f"  removed {a.folder}")
        except (UserError, OSError) as exc:
            say(f"  not done: {exc}")
            code = 1
    if action is None and ask is None:
        say("pass --finalise (keep what they measured, as partial runs) or --remove")
    return code


def _data_files(folder: Path) -> list[Path]:
    files = [folder / n for n in ("summary.csv", "timeline.csv", "errors.csv")]
    return [p for p in [*files, *sorted((folder / "histograms").glob("*.hlog"))] if p.is_file()]


def _drop_cut_line(path: Path) -> bool:
    """A file written line by line and killed mid-line: drop the cut line."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    with open(path, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
    return True


def _measured_seconds(folder: Path, target: dict[str, Any]) -> float:
    """Whole measured seconds of a target killed mid-window: its histogram intervals."""
    hlog = folder / "histograms" / f"{target.get('name')}-r{target.get('repetition', 1)}-latency.hlog"
    duration = float(target.get("duration_s") or 0)
    seconds: set[float] = set()
    with contextlib.suppress(OSError):
        for line in hlog.read_text(encoding="utf-8").splitlines():
            fields = line.split(",")
            if line.startswith("Tag=") and len(fields) > 2:
                with contextlib.suppress(ValueError):
                    start = float(fields[1])
                    if 0 <= start < duration:
                        seconds.add(start)
    return float(min(len(seconds), duration))
