"""Interop: Yubico's python-fido2 against ctap-softtoken over its unix socket.

python-fido2 is an independent CTAP client. If it can register, authenticate, use
hmac-secret and clientPIN with the softtoken, the softtoken's CTAPHID framing and the
authenticator behind it speak the same protocol as the rest of the world, not just as our
own client.

The softtoken binary: $CTAP_SOFTTOKEN_BIN, else target/debug/ctap-softtoken of this checkout.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from pathlib import Path

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2
from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

REPO = Path(__file__).resolve().parents[2]
BIN = Path(
    os.environ.get("CTAP_SOFTTOKEN_BIN", REPO / "target" / "debug" / "ctap-softtoken")
)
LAUNCHER = REPO / "scripts" / "softtoken"
REPORT = 64
RP_ID = "example.com"
ORIGIN = "https://example.com"


class UnixSocketConnection(CtapHidConnection):
    """One opened device: 64-byte reports over a unix stream socket, nothing else."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(path))

    def write_packet(self, data: bytes) -> None:
        assert len(data) == REPORT
        self.sock.sendall(data)

    def read_packet(self) -> bytes:
        buf = b""
        while len(buf) < REPORT:
            chunk = self.sock.recv(REPORT - len(buf))
            if not chunk:
                raise OSError("softtoken closed the connection")
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()


def open_device(sock: Path) -> CtapHidDevice:
    descriptor = HidDescriptor(str(sock), 0x1209, 0x0001, REPORT, REPORT, "ctap-softtoken", None)
    return CtapHidDevice(descriptor, UnixSocketConnection(sock))


class Softtoken:
    """The virtual key, started and stopped by the project's one launcher, scripts/softtoken."""

    def __init__(self, tmp: Path, *extra: str):
        if not BIN.exists():
            pytest.fail(
                f"{BIN} is missing: run `cargo build -p ctap-softtoken` in test-framework/"
                " or set CTAP_SOFTTOKEN_BIN"
            )
        self.socket = tmp / "key.sock"
        env = dict(os.environ, CTAP_BIN_DIR=str(BIN.parent))
        started = subprocess.run(
            [str(LAUNCHER), "start", str(self.socket), str(tmp / "state"), *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        if started.returncode != 0:
            pytest.fail(f"scripts/softtoken could not start the key ({started.returncode})")
        self.pid = started.stdout.strip()

    def device(self) -> CtapHidDevice:
        return open_device(self.socket)

    def stop(self) -> None:
        subprocess.run([str(LAUNCHER), "stop", self.pid], check=True)


@pytest.fixture
def token(tmp_path):
    t = Softtoken(tmp_path)
    yield t
    t.stop()


def test_get_info(token):
    info = Ctap2(token.device()).info
    assert "FIDO_2_0" in info.versions
    assert "FIDO_2_1" in info.versions
    assert "hmac-secret" in info.extensions
    assert info.max_msg_size == 3072
    assert set(info.pin_uv_protocols) >= {1, 2}
    assert info.options.get("clientPin") is False  # no PIN yet


def test_ping_and_wink(token):
    dev = token.device()
    payload = os.urandom(500)
    assert dev.ping(payload) == payload
    dev.wink()


def test_make_credential_and_assertion_signature(token):
    ctap = Ctap2(token.device())
    cdh = hashlib.sha256(b"register").digest()
    att = ctap.make_credential(
        cdh,
        {"id": RP_ID, "name": "Example"},
        {"id": b"user-1", "name": "alice"},
        [{"type": "public-key", "alg": -7}],
    )
    cred = att.auth_data.credential_data
    assert cred is not None
    assert att.auth_data.rp_id_hash == hashlib.sha256(RP_ID.encode()).digest()

    cdh = hashlib.sha256(b"login").digest()
    assertion = ctap.get_assertion(
        RP_ID, cdh, [{"type": "public-key", "id": cred.credential_id}]
    )
    assert assertion.auth_data.is_user_present()
    # fido2's own COSE key verifies the signature over authData || clientDataHash.
    cred.public_key.verify(bytes(assertion.auth_data) + cdh, assertion.signature)
    with pytest.raises(Exception):
        cred.public_key.verify(bytes(assertion.auth_data) + b"\0" * 32, assertion.signature)

    again = ctap.get_assertion(RP_ID, cdh, [{"type": "public-key", "id": cred.credential_id}])
    assert again.auth_data.counter > assertion.auth_data.counter


class NoPrompt(UserInteraction):
    def prompt_up(self):
        pass


@pytest.mark.parametrize("protocol", [PinProtocolV1, PinProtocolV2])
def test_hmac_secret_through_fido2_client(tmp_path, protocol, monkeypatch):
    token = Softtoken(tmp_path)
    try:
        # Force the PIN/UV protocol used for the hmac-secret shared secret.
        monkeypatch.setattr(ClientPin, "PROTOCOLS", [protocol])
        client = Fido2Client(
            token.device(),
            DefaultClientDataCollector(ORIGIN),
            user_interaction=NoPrompt(),
            extensions=[HmacSecretExtension(allow_hmac_secret=True)],
        )
        reg = client.make_credential(
            {
                "rp": {"id": RP_ID, "name": "Example"},
                "user": {"id": b"user-1", "name": "alice"},
                "challenge": os.urandom(32),
                "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                "authenticatorSelection": {"userVerification": "discouraged"},
                "extensions": {"hmacCreateSecret": True},
            }
        )
        assert reg.client_extension_results["hmacCreateSecret"] is True
        cred = reg.response.attestation_object.auth_data.credential_data
        allow = [{"type": "public-key", "id": cred.credential_id}]

        def hmac(salt: bytes) -> bytes:
            result = client.get_assertion(
                {
                    "rpId": RP_ID,
                    "challenge": os.urandom(32),
                    "allowCredentials": allow,
                    "userVerification": "discouraged",
                    "extensions": {"hmacGetSecret": {"salt1": salt}},
                }
            ).get_response(0)
            response = result.response
            cred.public_key.verify(
                bytes(response.authenticator_data) + response.client_data.hash,
                response.signature,
            )
            return result.client_extension_results.hmac_get_secret.output1

        salt_a, salt_b = b"a" * 32, b"b" * 32
        out_a = hmac(salt_a)
        assert len(out_a) == 32
        assert hmac(salt_a) == out_a, "same salt, same secret"
        assert hmac(salt_b) != out_a, "different salt, different secret"
    finally:
        token.stop()


@pytest.mark.parametrize("protocol", [PinProtocolV1, PinProtocolV2])
def test_client_pin(tmp_path, protocol):
    token = Softtoken(tmp_path)
    try:
        ctap = Ctap2(token.device())
        pin = ClientPin(ctap, protocol())
        pin.set_pin("123456")
        assert Ctap2(token.device()).info.options["clientPin"] is True
        retries, _ = pin.get_pin_retries()
        assert retries == 8

        # CTAP 2.1 getPinUvAuthTokenUsingPinWithPermissions (fido2 uses it when the key
        # advertises pinUvAuthToken) and the classic getPinToken.
        token_perm = pin.get_pin_token(
            "123456", ClientPin.PERMISSION.GET_ASSERTION, RP_ID
        )
        assert len(token_perm) in (16, 32)
        assert len(pin.get_pin_token("123456")) in (16, 32)

        with pytest.raises(CtapError) as err:
            pin.get_pin_token("000000", ClientPin.PERMISSION.GET_ASSERTION, RP_ID)
        assert err.value.code == CtapError.ERR.PIN_INVALID
        assert pin.get_pin_retries()[0] == retries - 1

        # The right PIN resets the counter.
        pin.get_pin_token("123456", ClientPin.PERMISSION.GET_ASSERTION, RP_ID)
        assert pin.get_pin_retries()[0] == retries
    finally:
        token.stop()


def test_pin_survives_restart(tmp_path):
    token = Softtoken(tmp_path)
    ClientPin(Ctap2(token.device()), PinProtocolV2()).set_pin("4321")
    token.stop()
    token = Softtoken(tmp_path)
    try:
        pin = ClientPin(Ctap2(token.device()), PinProtocolV2())
        assert Ctap2(token.device()).info.options["clientPin"] is True
        pin.get_pin_token("4321", ClientPin.PERMISSION.GET_ASSERTION, RP_ID)
    finally:
        token.stop()


def test_pin_flag_sets_the_pin_once(tmp_path):
    token = Softtoken(tmp_path, "--pin", "246810")
    try:
        ctap = Ctap2(token.device())
        assert ctap.info.options["clientPin"] is True
        ClientPin(ctap, PinProtocolV2()).get_pin_token(
            "246810", ClientPin.PERMISSION.GET_ASSERTION, RP_ID
        )
    finally:
        token.stop()
    # A later --pin does not change an existing PIN.
    token = Softtoken(tmp_path, "--pin", "999999")
    try:
        pin = ClientPin(Ctap2(token.device()), PinProtocolV1())
        pin.get_pin_token("246810")
    finally:
        token.stop()
