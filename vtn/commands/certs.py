"""`vtn certs revoke CERT`: put a certificate on its CA's revocation list (CRL).

A VTN with `crl_file` pointing at that list refuses the certificate at the TLS handshake
(it re-reads the file when it changes). Disable the VEN too (`vtn vens revoke VEN`): a
connection opened before the revocation is not closed by it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from certs.pki import CertPaths, crl_path, revoke


def register(subparsers) -> None:
    certs = subparsers.add_parser("certs", help="certificates of the VTN's CA")
    certs_sub = certs.add_subparsers(dest="action", required=True, metavar="ACTION")
    register_revoke(certs_sub)


def register_revoke(certs_sub) -> None:
    revoke_cmd = certs_sub.add_parser("revoke", help="add a certificate to the CA's CRL")
    revoke_cmd.add_argument("cert", type=Path, help="the certificate to revoke (PEM)")
    revoke_cmd.add_argument("--ca-cert", type=Path, required=True, help="the CA certificate")
    revoke_cmd.add_argument("--ca-key", type=Path, required=True, help="the CA's private key")
    revoke_cmd.add_argument("--crl", type=Path,
                            help="the CRL to update (default: next to the CA certificate, .crl)")
    revoke_cmd.set_defaults(func=_revoke)


def _revoke(args) -> int:
    ca = CertPaths(args.ca_cert, args.ca_key)
    try:
        written = revoke(ca, args.cert.read_bytes(), args.crl or crl_path(ca))
    except OSError as err:
        print(f"{err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    except ValueError as err:     # not a PEM certificate, or another CA's
        print(f"{args.cert}: {err}", file=sys.stderr)
        return 2
    print(f"revoked {args.cert} in {written}")
    return 0
