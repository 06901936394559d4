"""Interop: python-fido2's CTAP1/U2F client (`Ctap1`) against ctap-softtoken.

The softtoken serves U2F over CTAPHID_MSG with fido-authenticator's own CTAP1 code and a
self-signed batch attestation certificate it makes with its state. Every test runs twice: on
the normal key (CTAP2 and U2F) and on a `--ctap1-only` key (U2F only, as older keys are).
"""

from __future__ import annotations

import hashlib
import os
import struct

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.ctap import CtapError
from fido2.ctap1 import APDU, ApduError, Ctap1
from fido2.ctap2 import Ctap2
from fido2.hid import CAPABILITY, CTAPHID

from test_softtoken_fido2 import Softtoken

APP_ID = hashlib.sha256(b"pam://u2f.example").digest()


@pytest.fixture(params=[(), ("--ctap1-only",)], ids=["ctap2-key", "ctap1-only"])
def token(request, tmp_path):
    t = Softtoken(tmp_path, *request.param)
    yield t
    t.stop()


def challenge() -> bytes:
    return hashlib.sha256(os.urandom(32)).digest()


def test_version_and_capabilities(token):
    dev = token.device()
    assert not dev.capabilities & CAPABILITY.NMSG, "MSG is served"
    assert Ctap1(dev).get_version() == "U2F_V2"
    # The same request as a short APDU (case 2, Le = 0 meaning 256): same answer.
    assert dev.call(CTAPHID.MSG, bytes([0, 0x03, 0, 0, 0])) == b"U2F_V2\x90\x00"


def test_register_is_attested_by_the_batch_certificate(token):
    ctap1 = Ctap1(token.device())
    client = challenge()
    reg = ctap1.register(client, APP_ID)
    assert len(reg.public_key) == 65 and reg.public_key[0] == 0x04
    # python-fido2's own check: the attestation certificate's key signed
    # 0x00 || appId || challenge || key handle || public key.
    reg.verify(APP_ID, client)
    # And by hand, from the certificate's own key.
    cert = x509.load_der_x509_certificate(reg.certificate)
    signed = b"\0" + APP_ID + client + reg.key_handle + reg.public_key
    cert.public_key().verify(reg.signature, signed, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(Exception):
        reg.verify(APP_ID, challenge())
    # Self-signed: the certificate verifies under its own key.
    cert.public_key().verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256())
    )
    assert cert.issuer == cert.subject


def test_register_as_a_short_apdu(token):
    dev = token.device()
    client = challenge()
    # Case 3 short: CLA INS P1 P2 Lc data (no Le), the form older hosts send.
    response = dev.call(CTAPHID.MSG, bytes([0, 0x01, 0x03, 0, 64]) + client + APP_ID)
    assert response[-2:] == b"\x90\x00"
    assert response[0] == 0x05 and response[1] == 0x04


def test_authenticate_counter_and_signature(token):
    ctap1 = Ctap1(token.device())
    reg = ctap1.register(challenge(), APP_ID)
    counters = []
    for _ in range(2):
        client = challenge()
        sig = ctap1.authenticate(client, APP_ID, reg.key_handle)
        assert sig.user_presence & 0x01
        # Verified with the registered key over appId || flags || counter || challenge.
        sig.verify(APP_ID, client, reg.public_key)
        with pytest.raises(Exception):
            sig.verify(APP_ID, challenge(), reg.public_key)
        signed = APP_ID + bytes([sig.user_presence]) + struct.pack(">I", sig.counter) + client
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), reg.public_key)
        key.verify(sig.signature, signed, ec.ECDSA(hashes.SHA256()))
        counters.append(sig.counter)
    assert counters[1] > counters[0], counters


def test_check_only_tells_known_from_unknown_handles(token):
    ctap1 = Ctap1(token.device())
    reg = ctap1.register(challenge(), APP_ID)
    # A handle of this key for this appId: "conditions not satisfied" (it would need a touch).
    with pytest.raises(ApduError) as known:
        ctap1.authenticate(challenge(), APP_ID, reg.key_handle, check_only=True)
    assert known.value.code == APDU.USE_NOT_SATISFIED
    # Someone else's handle, or ours for another appId: "wrong data".
    with pytest.raises(ApduError) as unknown:
        ctap1.authenticate(challenge(), APP_ID, os.urandom(len(reg.key_handle)), check_only=True)
    assert unknown.value.code == APDU.WRONG_DATA
    other_app = hashlib.sha256(b"pam://other").digest()
    with pytest.raises(ApduError) as wrong_app:
        ctap1.authenticate(challenge(), other_app, reg.key_handle, check_only=True)
    assert wrong_app.value.code == APDU.WRONG_DATA


def test_ctap1_only_refuses_cbor(tmp_path):
    token = Softtoken(tmp_path, "--ctap1-only")
    try:
        dev = token.device()
        assert not dev.capabilities & CAPABILITY.CBOR
        with pytest.raises(CtapError) as refused:
            dev.call(CTAPHID.CBOR, b"\x04")  # authenticatorGetInfo
        assert refused.value.code == CtapError.ERR.INVALID_COMMAND
        with pytest.raises(ValueError):
            Ctap2(dev)
        # U2F still works on the same connection.
        assert Ctap1(dev).get_version() == "U2F_V2"
    finally:
        token.stop()


def test_attestation_survives_restart(tmp_path):
    """The batch certificate is made once, with the state, and kept."""
    token = Softtoken(tmp_path)
    try:
        first = Ctap1(token.device()).register(challenge(), APP_ID).certificate
    finally:
        token.stop()
    token = Softtoken(tmp_path, "--ctap1-only")
    try:
        again = Ctap1(token.device()).register(challenge(), APP_ID).certificate
    finally:
        token.stop()
    assert first == again


def flipped_first(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


@pytest.mark.parametrize(
    "fault",
    ["u2f-short-response", "u2f-wrong-status", "u2f-bad-der-signature", "u2f-other-challenge"],
)
def test_authenticate_faults_break_what_they_name(tmp_path, fault):
    token = Softtoken(tmp_path, "--ctap1-only", "--fault", fault)
    try:
        ctap1 = Ctap1(token.device())
        # Registration and the check-only probe are not hit.
        reg = ctap1.register(challenge(), APP_ID)
        with pytest.raises(ApduError) as known:
            ctap1.authenticate(challenge(), APP_ID, reg.key_handle, check_only=True)
        assert known.value.code == APDU.USE_NOT_SATISFIED
        client = challenge()
        if fault == "u2f-wrong-status":
            with pytest.raises(ApduError) as wrong:
                ctap1.authenticate(client, APP_ID, reg.key_handle)
            assert wrong.value.code == 0x9001
            return
        sig = ctap1.authenticate(client, APP_ID, reg.key_handle)
        with pytest.raises(Exception):
            sig.verify(APP_ID, client, reg.public_key)
        if fault == "u2f-short-response":
            assert sig.signature == b""
        elif fault == "u2f-bad-der-signature":
            assert sig.signature[0] == 0x31
        else:
            # A real signature, over another challenge than ours.
            sig.verify(APP_ID, flipped_first(client), reg.public_key)
    finally:
        token.stop()


def test_other_appid_fault_registers_for_another_appid(tmp_path):
    token = Softtoken(tmp_path, "--ctap1-only", "--fault", "u2f-other-appid")
    try:
        ctap1 = Ctap1(token.device())
        client = challenge()
        reg = ctap1.register(client, APP_ID)
        with pytest.raises(Exception):
            reg.verify(APP_ID, client)
        reg.verify(flipped_first(APP_ID), client)
        # The handle is not one for our appId.
        with pytest.raises(ApduError) as unknown:
            ctap1.authenticate(challenge(), APP_ID, reg.key_handle, check_only=True)
        assert unknown.value.code == APDU.WRONG_DATA
    finally:
        token.stop()
