"""Small pure pieces: clock helpers, XSD helper, PKI, program files."""
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509

from certs.pki import ensure_dev_pki
from flexadr import xsd
from flexadr.clock import ceil_to
from schedules import model



def test_ceil_to_aligns_on_the_epoch():
    assert ceil_to(datetime(2026, 1, 1, 0, 0, 3, tzinfo=timezone.utc), timedelta(seconds=5)) == \
        datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


def test_xsd_rejects_an_invalid_message_and_names_the_problem():
    from openleadr.messaging import create_message
    valid = create_message("oadrPoll", ven_id="ven1")
    assert xsd.message_type(xsd.validate(valid)) == "oadrPoll"
    with pytest.raises(xsd.SchemaViolation) as err:
        xsd.validate(valid.replace("<ei:venID>ven1</ei:venID>", "<ei:venId>ven1</ei:venId>"))
    assert "venId" in str(err.value)
    with pytest.raises(xsd.SchemaViolation):
        xsd.validate("<oadrPayload>")


def test_dev_pki_is_ecdsa_by_default_chained_and_reused(tmp_path):
    pki = ensure_dev_pki(tmp_path, ["a", "b"])
    ca = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    ven = x509.load_pem_x509_certificate(pki.vens["a"].cert.read_bytes())
    ven.verify_directly_issued_by(ca)
    assert ven.public_key().curve.name == "secp256r1"
    assert pki.vens["a"].fingerprint != pki.vens["b"].fingerprint
    again = ensure_dev_pki(tmp_path, ["a", "b"])
    assert again.vens["a"].fingerprint == pki.vens["a"].fingerprint


def test_program_files_load_with_their_signal_mapping():
    discharge = model.load("connected_solutions")
    assert discharge.signal.name == "LOAD_DISPATCH" and discharge.signal.unit == "kW"
    delay = model.load("managed_charging")
    assert (delay.signal.name, delay.signal.type, delay.signal.value) == \
        ("LOAD_CONTROL", "x-loadControlCapacity", 0.0)


def test_a_program_file_with_a_missing_field_names_it(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('id = "x"\nname = "x"\n')
    with pytest.raises(model.ProgramError) as err:
        model.load(path)
    assert "signal: missing" in str(err.value)
