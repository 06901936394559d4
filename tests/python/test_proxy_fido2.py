"""Interop: Yubico's python-fido2 through ctap-proxy to ctap-softtoken.

python-fido2 is an independent CTAP client: registering, asserting, the PIN token exchange
and multi-credential assertions through the proxy show that its mediation (strict decoding,
canonical re-encoding, the per-client policy) passes what the world sends; a denied RP and
refused commands get CTAP2_ERR_OPERATION_DENIED and leave the key as it was.

The proxy binary: $CTAP_PROXY_BIN, else $CTAP_BIN_DIR/ctap-proxy, else target/debug/ctap-proxy
of this checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin

from test_softtoken_fido2 import REPO, Softtoken, open_device

PROXY = Path(
    os.environ.get("CTAP_PROXY_BIN")
    or Path(os.environ.get("CTAP_BIN_DIR", REPO / "target" / "debug")) / "ctap-proxy"
)
RP_ID = "example.com"
ORIGIN = "https://example.com"
PIN = "12345678"
DENIED = CtapError.ERR.OPERATION_DENIED


class Proxy:
    """ctap-proxy serving `dev.sock` (client `dev`) and `other.sock` in front of a key."""

    def __init__(self, tmp: Path, key: Softtoken, policy: str):
        if not PROXY.exists():
            pytest.fail(f"{PROXY} is missing: run `cargo build -p ctap-proxy` or set CTAP_PROXY_BIN")
        # The proxy trusts a policy only where no one else could have written it: not under
        # the world-writable /tmp, but in the target directory, as the Rust tests do.
        base = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "ctap-e2e-tmp"
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        self.trusted = Path(tempfile.mkdtemp(prefix="py-proxy-", dir=base))
        self.trusted.chmod(0o755)
        self.policy = self.trusted / "proxy.toml"
        self.policy.write_text(policy)
        self.policy.chmod(0o644)
        self.log = tmp / "proxy.log"
        self.dev = tmp / "dev.sock"
        self.proc = subprocess.Popen(
            [
                str(PROXY), "serve", "--device", f"unix:{key.socket}",
                "--policy", str(self.policy), "--syslog-socket", "none",
                "--listen", f"unix:{self.dev}",
            ],
            stdin=subprocess.DEVNULL,
            stderr=self.log.open("w"),
        )
        deadline = time.time() + 20
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(self.dev))
                s.close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"ctap-proxy did not start:\n{self.log.read_text()}")
                time.sleep(0.02)

    def device(self):
        return open_device(self.dev)

    def audit(self) -> list[str]:
        return [l for l in self.log.read_text().splitlines() if l.startswith("ctap-proxy: audit ")]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.trusted, ignore_errors=True)


POLICY = f'[client.dev]\nrp_ids = ["{RP_ID}"]\n'


class PinPrompt(UserInteraction):
    def prompt_up(self):
        pass

    def request_pin(self, permissions, rp_id):
        return PIN

    def request_uv(self, permissions, rp_id):
        return True


@pytest.fixture
def setup(tmp_path):
    key = Softtoken(tmp_path, "--pin", PIN)
    proxy = Proxy(tmp_path, key, POLICY)
    yield key, proxy
    proxy.stop()
    key.stop()


def register(dev, rp=RP_ID, uv="required", rk="discouraged", user=b"user-1"):
    client = Fido2Client(dev, DefaultClientDataCollector(f"https://{rp}"), user_interaction=PinPrompt())
    return client.make_credential(
        {
            "rp": {"id": rp, "name": "Example"},
            "user": {"id": user, "name": "alice"},
            "challenge": os.urandom(32),
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "authenticatorSelection": {"userVerification": uv, "residentKey": rk},
        }
    )


def test_registers_and_asserts_with_the_pin_through_the_proxy(setup):
    key, proxy = setup
    dev = proxy.device()
    reg = register(dev)
    cred = reg.response.attestation_object.auth_data.credential_data
    client = Fido2Client(dev, DefaultClientDataCollector(ORIGIN), user_interaction=PinPrompt())
    result = client.get_assertion(
        {
            "rpId": RP_ID,
            "challenge": os.urandom(32),
            "allowCredentials": [{"type": "public-key", "id": cred.credential_id}],
            "userVerification": "required",
        }
    ).get_response(0)
    response = result.response
    assert response.authenticator_data.is_user_verified()
    cred.public_key.verify(
        bytes(response.authenticator_data) + response.client_data.hash, response.signature
    )
    audit = "\n".join(proxy.audit())
    # The PIN token came through clientPIN, limited to this RP.
    assert f'command=clientPIN rp_id="{RP_ID}" decision=allow status=0x00' in audit
    assert f'command=getAssertion rp_id="{RP_ID}" decision=allow status=0x00' in audit


def test_denied_rp_and_refused_commands_leave_the_key_unchanged(setup):
    key, proxy = setup
    reg = register(proxy.device())
    cred = reg.response.attestation_object.auth_data.credential_data
    state_before = (key.socket.parent / "state").read_bytes()
    ctap = Ctap2(proxy.device())
    with pytest.raises(CtapError) as e:
        ctap.get_assertion("evil.example", hashlib.sha256(b"x").digest())
    assert e.value.code == DENIED
    with pytest.raises(CtapError) as e:
        ctap.make_credential(
            hashlib.sha256(b"x").digest(),
            {"id": "evil.example", "name": "Evil"},
            {"id": b"u", "name": "u"},
            [{"type": "public-key", "alg": -7}],
        )
    assert e.value.code == DENIED
    with pytest.raises(CtapError) as e:
        ctap.reset()
    assert e.value.code == DENIED
    # credentialManagement: refused at the token already (permission 0x04), and as a command.
    pin = ClientPin(ctap)
    with pytest.raises(CtapError) as e:
        pin.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
    assert e.value.code == DENIED
    with pytest.raises(CtapError) as e:
        ctap.send_cbor(Ctap2.CMD.CREDENTIAL_MGMT, {1: 1})
    assert e.value.code == DENIED
    # A token for another RP is refused too.
    with pytest.raises(CtapError) as e:
        pin.get_pin_token(PIN, ClientPin.PERMISSION.GET_ASSERTION, "evil.example")
    assert e.value.code == DENIED
    # Changing the PIN is never a client's business.
    with pytest.raises(CtapError) as e:
        pin.change_pin(PIN, "87654321")
    assert e.value.code == DENIED

    assert (key.socket.parent / "state").read_bytes() == state_before
    # On the key itself: the credential and the PIN are still there.
    direct = Ctap2(key.device())
    ClientPin(direct).get_pin_token(PIN, ClientPin.PERMISSION.GET_ASSERTION, RP_ID)
    direct.get_assertion(
        RP_ID,
        hashlib.sha256(b"x").digest(),
        [{"type": "public-key", "id": cred.credential_id}],
        options={"up": False},
    )
    refused = [l for l in proxy.audit() if "decision=refuse" in l]
    assert len(refused) == 7, refused


def test_discoverable_credentials_of_another_rp_never_come_through(setup):
    key, proxy = setup
    # Two resident credentials for our RP and two for another, made on the key directly.
    for rp, user in [(RP_ID, b"a1"), (RP_ID, b"a2"), ("other.example", b"b1"), ("other.example", b"b2")]:
        register(key.device(), rp=rp, rk="required", user=user)
    client = Fido2Client(
        proxy.device(), DefaultClientDataCollector(ORIGIN), user_interaction=PinPrompt()
    )
    selection = client.get_assertion(
        {"rpId": RP_ID, "challenge": os.urandom(32), "userVerification": "required"}
    )
    responses = selection.get_assertions()
    assert len(responses) == 2
    assert {r.user["id"] for r in responses} == {b"a1", b"a2"}
    for r in responses:
        assert r.auth_data.rp_id_hash == hashlib.sha256(RP_ID.encode()).digest()
    audit = "\n".join(proxy.audit())
    assert f'command=getNextAssertion rp_id="{RP_ID}" decision=allow' in audit
