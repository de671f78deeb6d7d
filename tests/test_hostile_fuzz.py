"""Fuzzing the OpenADR endpoint of a running VTN (issue 11 "must show"): structure-aware
mutations of every message type a VEN sends, re-signed with the VEN's certificate so they
reach the handlers, and byte mutations of signed messages. Every input gets HTTP 200 and a
valid 2.0b answer (never a 500), and every refused input leaves the store unchanged.

Bounded (max_examples) so the file runs in well under a minute; bench/fuzz_openadr.py
runs the same mutators for as many inputs as you like.
"""
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile_fuzz import Rig, byte_flip, judge, structure

pytestmark = pytest.mark.fuzz
SETTINGS = settings(max_examples=250, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    logging.getLogger("vtn.security").setLevel(logging.ERROR)   # one line per refusal, x500
    rig = Rig(tmp_path_factory.mktemp("fuzz"))
    yield rig
    rig.close()
    logging.getLogger("vtn.security").setLevel(logging.NOTSET)


def _check(rig: Rig, service: str, body: bytes) -> None:
    label, problem = judge(rig, service, body)
    rig.keep_registered()
    assert problem is None, f"{problem}\ninput to {service}: {body[:3000]!r}"


@SETTINGS
@given(rng=st.randoms(use_true_random=False))
def test_structure_mutations_of_every_message_type(rig, rng):
    _check(rig, *structure(rng, rig.peer, rig.messages))


@SETTINGS
@given(rng=st.randoms(use_true_random=False))
def test_byte_mutations_of_signed_messages(rig, rng):
    _check(rig, *byte_flip(rng, rig.peer, rig.messages))


def test_every_unmutated_message_is_accepted(rig):
    """The corpus itself is valid: the mutations start from messages the VTN takes."""
    for service, message_type, payload in rig.messages:
        label, problem = judge(rig, service, rig.peer.sign(message_type, **payload))
        rig.keep_registered()
        assert problem is None and label in ("empty", f"{label.split()[0]} 200"), (message_type, label)
