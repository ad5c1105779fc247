"""Reading scenario files: a name or a path → a validated Scenario, every problem on its own
line naming the file and the key; and the JSON Schema editors check files against."""

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.errors import UserError
from harness.scenario.errors import problems
from harness.scenario.model import Scenario, ScenarioError
from harness.scenario.types import parse_duration


def scenario_schema() -> dict[str, Any]:
    """The JSON Schema of a scenario file (its keys, by the names the file uses)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            **Scenario.model_json_schema(by_alias=True)}


def parse_scenario(raw: dict[str, Any], where: str) -> "Scenario":
    """Validate a decoded TOML document; raise ScenarioError listing every problem."""
    try:
        sc = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(problems(exc, Scenario, where)) from None
    sc._path = where
    return sc


def load_scenario(path: Path | str) -> "Scenario":
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such scenario file") from None
    except IsADirectoryError:
        raise ScenarioError([f"{path}: is a folder, not a scenario file"]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError([f"{path}: not a text file: a scenario is UTF-8 TOML "
                             f"(undecodable byte at offset {exc.start})"]) from None
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_scenario(raw, str(path))


# The scenarios shipped with commbench, found wherever the command is run from.
BUNDLED = Path(__file__).resolve().parents[2] / "scenarios"


def find_scenario(name_or_path: str, directory: Path = Path("scenarios")) -> Path:
    """A path as given, or a name looked up as `<directory>/<name>.toml`, then among the
    shipped scenarios (so `commbench run quick` works outside the repository's folder too)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix == ".toml" or "/" in name_or_path:
        return path
    folders = [directory] + ([BUNDLED] if BUNDLED.is_dir() and BUNDLED.resolve() != directory.resolve()
                             else [])
    for folder in folders:
        candidate = folder / f"{name_or_path}.toml"
        if candidate.exists():
            return candidate
    known = sorted({p.stem for folder in folders for p in folder.glob("*.toml")})
    where = " or ".join(f"{folder}/" for folder in folders)
    raise UserError(f"no scenario {name_or_path!r}: not a file, and not in {where} "
                    f"(known: {', '.join(known) or 'none'})")


def scenario_folder(directory: Path) -> Path:
    """The folder `commbench scenarios` lists: the one given, or the shipped one when the
    default `scenarios/` is not where the command runs."""
    if directory == Path("scenarios") and not directory.is_dir() and BUNDLED.is_dir():
        return BUNDLED
    return directory


def list_scenarios(directory: Path) -> list[tuple[Path, Scenario | ScenarioError]]:
    """Every scenario file in a folder, loaded (or the error that stops it loading)."""
    if not directory.is_dir():
        raise UserError(f"{directory}: no such folder")
    out: list[tuple[Path, Scenario | ScenarioError]] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            out.append((path, load_scenario(path)))
        except ScenarioError as exc:
            out.append((path, exc))
        except UserError as exc:  # e.g. a file removed while listing: listed, not fatal
            out.append((path, ScenarioError([str(exc)])))
    return out


def duration_option(text: str | None, option: str, allow_zero: bool = False) -> float | None:
    """A command-line duration ("30s", "500ms", "2m" or seconds); None keeps the scenario's."""
    if text is None:
        return None
    try:
        seconds = parse_duration(float(text))
    except ValueError:
        seconds = parse_duration(text)
    if seconds is None or seconds < 0 or (seconds == 0 and not allow_zero):
        raise UserError(f'{option} takes a duration such as "30s", "500ms" or "2m"; got {text!r}')
    return seconds
