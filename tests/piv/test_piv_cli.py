"""credential-process and sign-string against the virtual PIV card, through both middlewares."""

from __future__ import annotations

import json
from pathlib import Path

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI, Issued, issue
from support.util import ARN_ARGS, assert_one_line_error, run_cli

from .tty import PromptAnswerer, run_cli_tty
from .virtual import PIN, VirtualPiv, provision


def _uri(slot_id: str, pin_file: Path | None) -> str:
    return f"pkcs11:id=%{slot_id}" + (f"?pin-source=file:{pin_file}" if pin_file else "")


def test_credential_process_slot_9a(
    piv: VirtualPiv, module: str, pki: PKI, endpoint: LocalEndpoint, pin_file: Path
) -> None:
    provision(piv, 0x9A, pki.leaf("ec-p256", cn="piv 9a"))
    piv.insert()
    proc = run_cli(
        [
            "credential-process",
            "--pkcs11-uri",
            _uri("01", pin_file),
            "--pkcs11-lib",
            module,
            "--endpoint",
            endpoint.url,
            "--debug",
            *ARN_ARGS,
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["AccessKeyId"]
    c = piv.counters()
    assert (c["verify"], c["sign"]) == (1, 1), c
    assert endpoint.state.sessions_created == 1
    assert PIN not in proc.stderr  # not even with --debug


def test_slot_9c_one_pin_entry_with_reuse_pin(
    piv: VirtualPiv, module: str, pki: PKI, endpoint: LocalEndpoint, pin_file: Path
) -> None:
    """9c is always-authenticate: --reuse-pin makes one prompt serve login and signature;
    without it the signing PIN is asked once (the user PIN came from a file)."""
    provision(piv, 0x9C, pki.leaf("rsa2048", cn="piv 9c"))
    piv.insert()
    args = ["credential-process", "--pkcs11-lib", module, "--endpoint", endpoint.url, *ARN_ARGS]
    tty = PromptAnswerer(PIN)
    try:
        proc = run_cli_tty([*args, "--pkcs11-uri", _uri("02", None), "--reuse-pin"], tty)
        assert proc.returncode == 0, proc.stderr
        assert tty.prompts == 1, tty.output
        proc = run_cli_tty([*args, "--pkcs11-uri", _uri("02", pin_file)], tty)
        assert proc.returncode == 0, proc.stderr
        assert tty.prompts == 2, tty.output
    finally:
        tty.close()
    c = piv.counters()
    assert c["sign"] == 2 and piv.state()["pin_retries"] == 3, c
    assert PIN not in proc.stderr and PIN.encode() not in tty.output
    assert endpoint.state.sessions_created == 2


def test_sign_string(piv: VirtualPiv, module: str, pki: PKI, pin_file: Path) -> None:
    from rolesanywhere_signer.signer import verify_signature

    leaf = pki.leaf("ec-p384", cn="piv sign-string")
    provision(piv, 0x9A, leaf)
    piv.insert()
    args = ["sign-string", "--stdin", "--format", "text", "--pkcs11-uri", _uri("01", pin_file), "--pkcs11-lib", module]
    proc = run_cli(args, input=b"hello card")  # --stdin: sign these bytes, not the reference's fixed message
    assert proc.returncode == 0, proc.stderr
    sig = bytes.fromhex(proc.stdout.strip())
    assert verify_signature(leaf.cert.public_key(), sig, b"hello card", "sha256")


def test_wrong_pin_costs_one_try_and_says_how_many_are_left(piv: VirtualPiv, module: str, tmp_path: Path) -> None:
    provision(piv, 0x9A, PKI_LEAF())
    piv.insert()
    bad = tmp_path / "bad"
    bad.write_text("999999\n")
    proc = run_cli(["sign-string", "--pkcs11-uri", _uri("01", bad), "--pkcs11-lib", module], input=b"x")
    assert_one_line_error(proc, "wrong PIN")
    assert "2 tries left" in proc.stderr, proc.stderr
    assert "999999" not in proc.stderr
    assert piv.state()["pin_retries"] == 2
    assert piv.counters()["verify"] == 1  # not retried


def test_locked_pin_names_the_puk(piv: VirtualPiv, module: str, pin_file: Path) -> None:
    provision(piv, 0x9A, PKI_LEAF())
    piv.update(pin_retries=0)
    piv.insert()
    proc = run_cli(["sign-string", "--pkcs11-uri", _uri("01", pin_file), "--pkcs11-lib", module], input=b"x")
    assert_one_line_error(proc, "locked")
    assert "PUK" in proc.stderr
    assert piv.state()["pin_retries"] == 0


def PKI_LEAF() -> Issued:
    return issue("piv leaf", key_type="ec-p256")
