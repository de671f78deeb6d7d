"""`vtn certs`: a CA for pilots, VTN and VEN certificates, fingerprints, the import of
production (OpenADR Alliance) certificates, and revocation. Files go where certs/pki.py
`Layout` says: the CA in --ca (keep it offline), what the VTN and VENs use in --pki.

`revoke` puts a certificate on its CA's revocation list (CRL): a VTN with `crl_file`
pointing at that list refuses the certificate at the TLS handshake (it re-reads the file
when it changes). Disable the VEN too (`vtn vens revoke VEN`): a connection opened before
the revocation is not closed by it.

To add a verb, write `_add_<verb>(actions)` and list it in VERBS.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certs import pki
from vtn.config import ConfigError

KEY_TYPES = {"ecc": "ecdsa", "rsa": "rsa"}

EPILOG = """examples:
  vtn certs init --ca /srv/flexadr/ca --pki /etc/flexadr/pki
  vtn certs issue-vtn --ca /srv/flexadr/ca --pki /etc/flexadr/pki --host vtn.example.org
  vtn certs issue-ven ven-001 --ca /srv/flexadr/ca --pki /etc/flexadr/pki
  vtn certs fingerprint /etc/flexadr/pki/vtn.crt
  vtn certs import --pki /etc/flexadr/pki alliance-root.pem alliance-intermediates.pem \\
      --cert vtn-issued.pem --key vtn.key
  vtn certs revoke /etc/flexadr/pki/vens/ven-001.crt \
      --ca-cert /srv/flexadr/ca/ca.crt --ca-key /srv/flexadr/ca/ca.key
"""


def register(subparsers) -> None:
    certs = subparsers.add_parser(
        "certs", help="certificates: a pilot CA, VTN/VEN certificates, fingerprints, import",
        description="Certificates for OpenADR's mutual TLS. A pilot runs its own CA (init, "
                    "issue-vtn, issue-ven, revoke); production uses OpenADR Alliance "
                    "certificates (import). See docs/operations.md.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = certs.add_subparsers(dest="action", required=True, metavar="ACTION")
    for add in VERBS:
        add(actions)


def _verb(actions, name: str, help_: str, example: str, func) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help_, description=help_ + ".",
                                epilog=f"example:\n  {example}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=func)
    return parser


def _folders(parser, ca: bool = True) -> None:
    if ca:
        parser.add_argument("--ca", type=Path, default=Path("ca"),
                            help="the CA's folder: ca.crt and its private key ca.key (default ca)")
    parser.add_argument("--pki", type=Path, default=Path("pki"),
                        help="folder of the trust bundle and issued certificates (default pki)")


def _key_type(parser) -> None:
    parser.add_argument("--key-type", choices=sorted(KEY_TYPES), default="ecc",
                        help="ecc (ECDSA P-256, default: fast signing) or rsa (RSA-2048)")


def _add_init(actions) -> None:
    parser = _verb(actions, "init", "create a CA for a pilot, and the trust bundle",
                   "vtn certs init --ca ca --pki pki --key-type ecc", _init)
    _folders(parser)
    _key_type(parser)
    parser.add_argument("--name", default="flexadr pilot CA", help="the CA's common name")


def _add_issue_vtn(actions) -> None:
    parser = _verb(actions, "issue-vtn", "issue the VTN's server certificate",
                   "vtn certs issue-vtn --host vtn.example.org --host 10.0.0.5", _issue_vtn)
    _folders(parser)
    _key_type(parser)
    parser.add_argument("--host", action="append", dest="hosts",
                        help="DNS name or IP address the VENs connect to (repeat; "
                             "default localhost and 127.0.0.1)")


def _add_issue_ven(actions) -> None:
    parser = _verb(actions, "issue-ven", "issue a VEN's client certificate",
                   "vtn certs issue-ven ven-001", _issue_ven)
    parser.add_argument("name", help="the VEN's name (venName), e.g. ven-001")
    _folders(parser)
    _key_type(parser)


def _add_fingerprint(actions) -> None:
    parser = _verb(actions, "fingerprint", "print the OpenADR 2.0b fingerprint of certificates",
                   "vtn certs fingerprint pki/vtn.crt pki/vens/*.crt", _fingerprint)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="PEM certificate")


def _add_import(actions) -> None:
    parser = _verb(actions, "import",
                   "add a production chain (root, intermediates) to the trust bundle, and "
                   "optionally install a certificate issued under it",
                   "vtn certs import --pki pki root.pem intermediates.pem "
                   "--cert vtn.pem --key vtn.key", _import)
    parser.add_argument("chains", nargs="+", type=Path, metavar="CHAIN",
                        help="PEM file(s) with CA certificates; leaf certificates are skipped")
    _folders(parser, ca=False)
    parser.add_argument("--cert", type=Path, help="a certificate issued under the chain")
    parser.add_argument("--key", type=Path, help="its private key")
    parser.add_argument("--ven", metavar="NAME",
                        help="install --cert/--key as this VEN's (default: as the VTN's)")


def _add_revoke(actions) -> None:
    parser = _verb(actions, "revoke", "add a certificate to the CA's CRL",
                   "vtn certs revoke pki/vens/ven-001.crt --ca-cert ca/ca.crt --ca-key ca/ca.key",
                   _revoke)
    parser.add_argument("cert", type=Path, help="the certificate to revoke (PEM)")
    parser.add_argument("--ca-cert", type=Path, required=True, help="the CA certificate")
    parser.add_argument("--ca-key", type=Path, required=True, help="the CA's private key")
    parser.add_argument("--crl", type=Path,
                        help="the CRL to update (default: next to the CA certificate, .crl)")


VERBS = [_add_init, _add_issue_vtn, _add_issue_ven, _add_fingerprint, _add_import, _add_revoke]


def _layout(args) -> pki.Layout:
    return pki.Layout(getattr(args, "ca", Path("ca")), args.pki)


def _need_ca(layout: pki.Layout) -> None:
    for path in (layout.ca.cert, layout.ca.key):
        if not path.is_file():
            raise ConfigError(f"{path}: no such file (run `vtn certs init --ca "
                              f"{layout.ca_dir}` first, or give --ca)")


def _refuse_overwrite(*paths: Path) -> None:
    for path in paths:
        if path.exists():
            raise ConfigError(f"{path}: already exists (move it away to replace it)")


def _init(args) -> int:
    layout = _layout(args)
    _refuse_overwrite(layout.ca.cert, layout.ca.key)
    ca = layout.init(args.name, KEY_TYPES[args.key_type])
    print(f"CA {ca.cert} (private key {ca.key}: keep it offline)")
    print(f"trust bundle {layout.bundle} (ca_file of the VTN and of every VEN)")
    return 0


def _issue_vtn(args) -> int:
    layout = _layout(args)
    hosts = args.hosts or ("localhost", "127.0.0.1")
    paths = _issue(layout, layout.vtn, lambda: layout.issue_vtn(hosts, KEY_TYPES[args.key_type]))
    print(f"fingerprint {paths.fingerprint} (the VENs' vtn_fingerprint)")
    return 0


def _issue_ven(args) -> int:
    layout = _layout(args)
    paths = _issue(layout, layout.ven(args.name),
                   lambda: layout.issue_ven(args.name, KEY_TYPES[args.key_type]))
    print(f"fingerprint {paths.fingerprint}")
    print(f"enrol it: vtn enrol --config vtn.toml {args.name} {paths.cert} --program PROGRAM "
          f"--kind KIND")
    return 0


def _issue(layout: pki.Layout, target: pki.CertPaths, make) -> pki.CertPaths:
    _need_ca(layout)
    _refuse_overwrite(target.cert)
    paths = make()
    print(f"certificate {paths.cert}, key {paths.key}")
    return paths


def _fingerprint(args) -> int:
    for path in args.files:
        try:
            print(f"{pki.file_fingerprint(path)}  {path}")
        except pki.CertError as err:
            raise ConfigError(str(err)) from None
    return 0


def _import(args) -> int:
    layout = _layout(args)
    if (args.cert is None) != (args.key is None):
        raise ConfigError("--cert and --key go together")
    try:
        for path in args.chains + [p for p in (args.cert, args.key) if p is not None]:
            if not path.is_file():
                raise pki.CertError(f"{path}: no such file")
        added = pki.import_chain(layout, args.chains)
        for cert in added:
            print(f"added {cert.subject.rfc4514_string()} to {layout.bundle}")
        if not added:
            print(f"{layout.bundle}: already holds every CA certificate given")
        if args.cert is not None:
            target = layout.ven(args.ven) if args.ven else layout.vtn
            paths = pki.install(target, args.cert, args.key, layout.bundle)
            print(f"installed {paths.cert} (with its intermediates) and {paths.key}")
            print(f"fingerprint {paths.fingerprint}")
    except pki.CertError as err:
        raise ConfigError(str(err)) from None
    return 0


def _revoke(args) -> int:
    ca = pki.CertPaths(args.ca_cert, args.ca_key)
    try:
        written = pki.revoke(ca, args.cert.read_bytes(), args.crl or pki.crl_path(ca))
    except OSError as err:
        print(f"{err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    except ValueError as err:     # not a PEM certificate, or another CA's
        print(f"{args.cert}: {err}", file=sys.stderr)
        return 2
    print(f"revoked {args.cert} in {written}")
    return 0
