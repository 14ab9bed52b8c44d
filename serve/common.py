"""Small helpers that serve/ and bench/ share: timestamps, atomic writes, TOML look-up and pydantic errors.

A leaf module: it imports nothing of the project, so either package may import it without reaching into the
other's insides."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    """Write a file that readers see whole or not at all (state and manifests are read while being rewritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def named_toml(name_or_path: str, folder: Path, what: str, error: type[Exception]) -> Path:
    """The TOML file that a name (`folder/NAME.toml`) or a path names; `error` says what exists if it does not."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = folder / f"{name_or_path}.toml"
        if not path.exists():
            names = ", ".join(sorted(p.stem for p in folder.glob("*.toml")))
            raise error(f"unknown {what} {name_or_path!r}: choose one of {names} or give the path of a .toml file")
    elif not path.exists():
        raise error(f"{what} file {path} does not exist")
    return path


def error_lines(exc: ValidationError) -> list[str]:
    """Each of pydantic's errors as `field.path: message`, the way this project's error messages show them."""
    return [f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]


# The simulator validation's record in its results folder (serve/sim/validate.py writes it, the docs page reads it);
# not `manifest.json`, which names a bench run's record.
SIM_VALIDATION_MANIFEST = "validation-manifest.json"
