"""generate-key and csr on the PIV card through the module, the certificate written to the slot,
then credentials with it. ykcs11 makes keys as security officer (the management key); OpenSC's
PIV driver makes none, and says so."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI, issue
from support.util import ARN_ARGS, assert_one_line_error, run_cli

from .virtual import MGM_HEX, OPENSC, PIN, YKCS11, VirtualPiv

SO = {"ROLESANYWHERE_SIGNER_PKCS11_SO_PIN": MGM_HEX}


def test_generate_csr_write_certificate_and_get_credentials_ykcs11(
    piv: VirtualPiv, pki: PKI, endpoint: LocalEndpoint, pin_file: Path, tmp_path: Path
) -> None:
    piv.insert()
    uri = f"pkcs11:id=%01?pin-source=file:{pin_file}"
    gen = run_cli(
        ["generate-key", "--pkcs11-uri", uri, "--pkcs11-lib", YKCS11, "--key-type", "ec-p256", "--debug"], env=SO
    )
    assert gen.returncode == 0, gen.stderr
    assert MGM_HEX not in gen.stderr + gen.stdout
    public = serialization.load_pem_public_key(gen.stdout.encode())
    slot = piv.state()["slots"]["9a"]
    assert slot["origin"] == "generated"  # made on the card, never seen by the host
    csr_proc = run_cli(["csr", "--pkcs11-uri", uri, "--pkcs11-lib", YKCS11, "--subject", "CN=yubikey,O=Example"])
    assert csr_proc.returncode == 0, csr_proc.stderr
    csr = x509.load_pem_x509_csr(csr_proc.stdout.encode())
    assert csr.is_signature_valid and csr.public_key() == public
    cert = issue("yubikey", issuer=pki.root, public_key=csr.public_key())
    der = tmp_path / "cert.der"
    der.write_bytes(cert.der)
    write = subprocess.run(
        [
            *("pkcs11-tool", "--module", YKCS11, "--login", "--login-type", "so", "--so-pin", MGM_HEX),
            *("--write-object", str(der), "--type", "cert", "--id", "01"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert write.returncode == 0, write.stderr
    # the slot's certificate is ours now; ykcs11 also shows the key's attestation under the same id
    proc = run_cli(
        ["credential-process", "--pkcs11-uri", uri, "--pkcs11-lib", YKCS11, "--endpoint", endpoint.url, *ARN_ARGS]
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["AccessKeyId"]
    assert endpoint.state.sessions_created == 1
    assert PIN not in proc.stderr


def test_opensc_says_it_cannot_make_piv_keys(piv: VirtualPiv, pin_file: Path) -> None:
    piv.insert()
    uri = f"pkcs11:id=%01?pin-source=file:{pin_file}"
    gen = run_cli(["generate-key", "--pkcs11-uri", uri, "--pkcs11-lib", OPENSC, "--key-type", "ec-p256"])
    assert_one_line_error(gen, "could not make")
    assert "ykcs11" in gen.stderr or "ykman" in gen.stderr
    assert "9a" not in piv.state()["slots"]
