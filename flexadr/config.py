"""The one config mechanism: strict pydantic models over TOML files.

Every config file (vtn.toml, ven.toml, fleet.toml) is read by `read_toml` and
validated by a `Strict` model; a mistake becomes one `ConfigError` line:

    vtn.toml: poll_intervall_s: unknown key (did you mean 'poll_interval_s'?)
    vtn.toml: port: expected an integer, got '28443x'
    vtn.toml: cert: no such file: /etc/flexadr/pki/vtn.crt

Relative paths are relative to the config file: models read the file's folder
from the validation context ("base").
"""
from __future__ import annotations

import difflib
import os
import tomllib
import types
import typing
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      ValidationError, ValidationInfo)

from flexadr import data

M = TypeVar("M", bound="Strict")


class ConfigError(ValueError):
    """A config file that cannot be used; the message is one line naming the file and key."""


class Strict(BaseModel):
    """Unknown keys are errors, and TOML types are taken as written (no "5" for 5)."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def read_toml(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: no such config file") from err
    except IsADirectoryError as err:
        raise ConfigError(f"{path}: is a folder, not a config file") from err
    except PermissionError as err:
        raise ConfigError(f"{path}: not readable (permission denied)") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file ({err.reason})") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err


def validate(model: type[M], data: Any, base: Path, source: str,
             prefix: tuple[str | int, ...] = ()) -> M:
    """`model` from `data`, or a ConfigError listing every problem on one line."""
    try:
        return model.model_validate(data, context={"base": base})
    except ValidationError as err:
        raise ConfigError(f"{source}: " + "; ".join(
            problem(model, error, prefix) for error in _typos_first(err))) from None


def check(model: type[Strict], data: Any, base: Path, source: str,
          prefix: tuple[str | int, ...] = (), allow_missing: bool = False) -> None:
    """Like `validate` for part of a config (e.g. fleet defaults): with `allow_missing`,
    keys that are required but absent are left for the whole to supply."""
    try:
        model.model_validate(data, context={"base": base})
    except ValidationError as err:
        problems = [problem(model, error, prefix) for error in _typos_first(err)
                    if not (allow_missing and error["type"] == "missing")]
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems)) from None


def _typos_first(err: ValidationError) -> list[dict[str, Any]]:
    """An unknown key is often the reason another is missing: name it first."""
    return sorted(err.errors(), key=lambda error: error["type"] != "extra_forbidden")


def problem(model: type[BaseModel], error: dict[str, Any],
            prefix: tuple[str | int, ...] = ()) -> str:
    """One pydantic error as 'key.path: what is wrong'."""
    loc = tuple(error["loc"])
    where = key_path(prefix + loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key{_suggestion(model, loc)}"
    if kind == "missing":
        return f"{where}: missing"
    if kind == "value_error":
        return f"{where}: {error['ctx']['error']}"
    message = error["msg"]
    message = message[0].lower() + message[1:]
    message = message.replace("input should be", "should be")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        message = f"expected {_TYPE_NAMES.get(kind, message)}"
    return f"{where}: {message}, got {error['input']!r}"


_TYPE_NAMES = {"int_type": "an integer", "int_parsing": "an integer",
               "float_type": "a number", "float_parsing": "a number",
               "string_type": "a string", "bool_type": "true or false",
               "list_type": "a list", "dict_type": "a table", "model_type": "a table",
               "model_attributes_type": "a table", "tuple_type": "a list"}


def key_path(loc: tuple[str | int, ...]) -> str:
    """('ven', 2, 'owner', 'ready_by') -> 'ven[2].owner.ready_by'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _suggestion(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    known = _keys_at(model, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _keys_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model accepts at `loc` (list indexes and union tags skipped)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not _is_model(current):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _inner_model(field.annotation)
    return list(current.model_fields) if _is_model(current) else []


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _inner_model(annotation: Any) -> Any:
    """The model class inside Optional[...], list[...], Annotated[...], if any."""
    if _is_model(annotation):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _relative_path(value: Any, info: ValidationInfo) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a file name (a string), got {value!r}")
    if value.startswith(data.PREFIX):      # a file shipped in flexadr/data
        try:
            return data.resolve(value)
        except data.DataNotFound as err:
            raise ValueError(str(err)) from None
    base = (info.context or {}).get("base", Path.cwd())
    return (Path(base) / os.path.expanduser(value)).resolve()


def _readable(path: Path) -> Path:
    if not path.exists():
        raise ValueError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"not a file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"not readable (permission denied): {path}")
    return path


# A path relative to the config file, resolved.
RelativePath = Annotated[Path, BeforeValidator(_relative_path)]
# ... that names a file this process can read now.
ReadableFile = Annotated[Path, BeforeValidator(_relative_path), AfterValidator(_readable)]


def secret_file(hint: str = ""):
    """A readable file that holds a password or client secret (read with `read_secret`);
    an empty one is a config error now rather than a refused login later. `hint` says
    where the secret comes from."""
    def not_empty(path: Path) -> Path:
        if not read_secret(path):
            raise ValueError(f"{path} is empty" + (f" ({hint})" if hint else ""))
        return path
    return Annotated[ReadableFile, AfterValidator(not_empty)]


def read_secret(path: Path) -> str:
    return path.read_text().strip()


SecretFile = secret_file()


def sqlite_relative_to(base: Path, url: str) -> str:
    """A relative SQLite path in a config file is relative to that file."""
    path = url.removeprefix("sqlite:///")
    if not url.startswith("sqlite:///") or Path(path).is_absolute():
        return url
    return f"sqlite:///{(base / path).resolve()}"


def tls_problems(cert: Path, key: Path, ca_file: Path | None = None,
                 now: datetime | None = None) -> list[str]:
    """What stops TLS with these files, as 'key: problem' (the files exist: the model
    checked). Checked at start-up so the operator reads this, not an ssl traceback."""
    now = now or datetime.now(timezone.utc)
    problems = []
    try:
        chain = x509.load_pem_x509_certificates(cert.read_bytes())
    except ValueError:
        return [f"cert: not a PEM certificate: {cert}"]
    leaf = chain[0]
    if leaf.not_valid_after_utc < now:
        problems.append(f"cert: expired on {leaf.not_valid_after_utc:%Y-%m-%d}: {cert}")
    elif leaf.not_valid_before_utc > now:
        problems.append(f"cert: not valid until {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC "
                        f"(check this host's clock): {cert}")
    try:
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except TypeError:
        problems.append(f"key: encrypted with a passphrase (give an unencrypted key): {key}")
    except (ValueError, UnsupportedAlgorithm):
        problems.append(f"key: not a PEM private key: {key}")
    else:
        if _public(private.public_key()) != _public(leaf.public_key()):
            problems.append(f"key: not the key of {cert}: {key}")
    if ca_file is None:
        return problems
    try:
        x509.load_pem_x509_certificates(ca_file.read_bytes())
    except ValueError:
        problems.append(f"ca_file: not a PEM certificate bundle: {ca_file}")
    return problems


def _public(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def require_tls(source: str, prefix: str, cert: Path, key: Path,
                ca_file: Path | None = None) -> None:
    problems = tls_problems(cert, key, ca_file)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(prefix + p for p in problems))


def _full_jid(text: str) -> str:
    from flexadr.xmpp import valid_jid     # slixmpp, only for a file that has [xmpp]
    jid = valid_jid(text)
    if jid is None:
        raise ValueError(f"not a full JID user@domain/resource: {text!r}")
    return jid


FullJid = Annotated[str, AfterValidator(_full_jid)]


class XmppFile(Strict):
    """[xmpp]: the account on the XMPP server (the 2.0b XMPP transport, flexadr/xmpp.py).
    The TLS client certificate is the file's own cert and key."""
    server_host: str
    server_port: Annotated[int, Field(ge=1, le=65535)] = 5222
    jid: FullJid
    password_file: SecretFile

    def settings(self, cert: Path, key: Path, ca_file: Path, tls_profile: str = "default"):
        from flexadr.xmpp import XmppSettings
        return XmppSettings(self.server_host, self.server_port, self.jid,
                            read_secret(self.password_file), cert, key, ca_file,
                            tls_profile)
