"""`vtn data list`: the data files shipped in flexadr/data, by the `data:NAME` they go by."""
from __future__ import annotations

from flexadr import data

LICENCES = {     # by the start of the name; flexadr/data/LICENSES.md is the full text
    "isone_hourly_load_eei": "ISO-NE public data",
    "isone_hourly_load": "CC BY 4.0",
    "gfs_": "CC BY 4.0",
    "raw/nws_cap": "Apache-2.0",
    "boston_logan": "CC BY-NC 4.0 (non-commercial only)",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="the shipped load and weather data")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = sub.add_parser("list", help="each shipped file: data:NAME, licence, path "
                                          "($FLEXADR_DATA reads another folder)")
    listing.set_defaults(func=_list)


def licence(name: str) -> str:
    return next((text for start, text in LICENCES.items() if name.startswith(start)), "see LICENSES.md")


def _list(args) -> int:
    for name in data.names():
        print(f"{data.PREFIX}{name:<52} {licence(name):<34} {data.path(name)}")
    return 0
