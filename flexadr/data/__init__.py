"""The data files that ship with flexadr (ISO-NE load, weather, a CAP feed), and the one
place that finds them.

A file is named by its path in the data folder, e.g. `isone_hourly_load_2015-07_2019-12.csv`
or `raw/nws_cap_atom_us_2018-08-15_IBM-cap.xml`. The packaged copies are gzipped (the
readers in schedules/sources.py read `.gz` transparently); the Meteostat weather is under
`noncommercial/` because its licence (CC BY-NC 4.0) is not the others' (see PROVENANCE.md
and LICENSES.md beside this file). $FLEXADR_DATA points at another folder of the same
layout (plain or gzipped files), which is searched instead of the packaged one.

In config files and on the command line, `data:NAME` means "this shipped file".
"""
from __future__ import annotations

import os
from pathlib import Path

PREFIX = "data:"
PACKAGED = Path(__file__).resolve().parent
NONCOMMERCIAL = "noncommercial"
ENV = "FLEXADR_DATA"


class DataNotFound(FileNotFoundError):
    pass


def folder() -> Path:
    """$FLEXADR_DATA if set, else the packaged copy."""
    found = os.environ.get(ENV)
    return Path(found) if found else PACKAGED


def path(name: str) -> Path:
    """The file NAME of the data folder: NAME or NAME.gz, at the top or under noncommercial/."""
    base = folder()
    for candidate in (base / name, base / f"{name}.gz",
                      base / NONCOMMERCIAL / name, base / NONCOMMERCIAL / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataNotFound(f"no data file {name!r} in {base}"
                       + ("" if base == PACKAGED else f" (${ENV})"))


def resolve(text: str | Path) -> Path:
    """`data:NAME` -> the shipped file; anything else is a path, as given."""
    if isinstance(text, str) and text.startswith(PREFIX):
        return path(text[len(PREFIX):])
    return Path(text)


def names() -> list[str]:
    """Every file of the data folder, by the name path() takes."""
    base = folder()
    found = []
    for file in sorted(base.rglob("*")):
        if file.is_file() and not file.name.endswith((".py", ".md", ".pyc")):
            relative = file.relative_to(base).as_posix().removesuffix(".gz")
            found.append(relative.removeprefix(f"{NONCOMMERCIAL}/"))
    return found


def argument(text: str) -> Path:
    """argparse `type=`: a path or `data:NAME` (an unknown name is a usage error, exit 2)."""
    import argparse
    try:
        return resolve(text)
    except DataNotFound as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def read_bytes(name: str) -> bytes:
    """The file NAME's content, decompressed."""
    import gzip
    found = path(name)
    raw = found.read_bytes()
    return gzip.decompress(raw) if found.name.endswith(".gz") else raw
