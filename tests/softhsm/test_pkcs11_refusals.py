"""Every PKCS#11 refusal: one clear line, exit 1, nothing on stdout, a wrong PIN tried exactly once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rolesanywhere_signer.endpoint_server import LocalEndpoint
from support.pki import PKI
from support.util import ARN_ARGS, assert_one_line_error, run_cli

from .softhsm import MODULE, SPY, SoftHSM, login_results


def _cp(uri: str, endpoint, *extra: str, lib: str | None = MODULE) -> list[str]:  # type: ignore[no-untyped-def]
    args = ["credential-process", "--pkcs11-uri", uri, "--endpoint", endpoint.url, *ARN_ARGS, *extra]
    return [*args, "--pkcs11-lib", lib] if lib else args


@pytest.fixture
def tok(hsm: SoftHSM, pki: PKI) -> SoftHSM:
    hsm.init_token("tok")
    hsm.add_identity("tok", pki.leaf("ec-p256"), "k", "01")
    return hsm


@pytest.mark.skipif(not os.path.exists(SPY), reason="OpenSC pkcs11-spy is needed to count C_Login calls")
def test_wrong_pin_is_tried_exactly_once(tok: SoftHSM, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    log = tmp_path / "spy.log"
    bad = tmp_path / "badpin"
    bad.write_text("0000\n")
    proc = run_cli(_cp(f"pkcs11:token=tok;object=k?pin-source=file:{bad}", endpoint, lib=SPY), env=tok.spy_env(log))
    assert_one_line_error(proc, "wrong PIN for token 'tok'")
    assert "few tries are left" in proc.stderr and "0000" not in proc.stderr
    assert login_results(log) == ["CKR_PIN_INCORRECT"]  # the attempt counter moved by exactly one
    assert tok.token_flags("tok") & 0x10000  # CKF_USER_PIN_COUNT_LOW, as the token recorded it
    assert endpoint.state.sessions_created == 0


@pytest.mark.skipif(not os.path.exists(SPY), reason="OpenSC pkcs11-spy is needed to count C_Login calls")
def test_locked_token_is_not_even_tried(tok: SoftHSM, endpoint: LocalEndpoint, tmp_path: Path) -> None:
    tok.set_token_flags("tok", tok.token_flags("tok") | 0x40000)  # CKF_USER_PIN_LOCKED
    log = tmp_path / "spy.log"
    proc = run_cli(_cp(tok.uri("tok", "k"), endpoint, lib=SPY), env=tok.spy_env(log))
    assert_one_line_error(proc, "PIN of token 'tok' (serial")
    assert "locked" in proc.stderr
    assert login_results(log) == []


def test_no_token(tok: SoftHSM, endpoint: LocalEndpoint) -> None:
    assert_one_line_error(run_cli(_cp(tok.uri("nope", "k"), endpoint), env=tok.env), "no token matches")


def test_no_module(tok: SoftHSM, endpoint: LocalEndpoint) -> None:
    assert_one_line_error(
        run_cli(_cp(tok.uri("tok", "k"), endpoint, lib="/nonexistent/lib.so"), env=tok.env),
        "/nonexistent/lib.so (--pkcs11-lib) does not exist",
    )
    proc = run_cli(_cp("pkcs11:token=tok?module-name=nosuchmodule", endpoint, lib=None), env=tok.env)
    assert_one_line_error(proc, "module-name=nosuchmodule was not found")
    not_a_module = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    if os.path.exists(not_a_module):
        proc = run_cli(_cp(tok.uri("tok", "k"), endpoint, lib=not_a_module), env=tok.env)
        assert_one_line_error(proc, "cannot load PKCS#11 module")


def test_no_module_anywhere_names_what_was_tried(tok: SoftHSM, endpoint: LocalEndpoint) -> None:
    from rolesanywhere_signer.backends.pkcs11_token import proxy_candidates

    if any(os.path.exists(p) for p in proxy_candidates()):
        pytest.skip("p11-kit-proxy is installed here")
    proc = run_cli(_cp(tok.uri("tok", "k"), endpoint, lib=None), env=tok.env)
    assert_one_line_error(proc, "p11-kit-proxy was not found (tried /usr/lib/")


def test_ambiguous_objects_on_two_tokens(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    for name in ("tokA", "tokB"):
        hsm.init_token(name)
        hsm.add_identity(name, pki.leaf("ec-p256", cn=name), "same", "01")
    proc = run_cli(_cp("pkcs11:object=same?pin-source=file:" + str(hsm.pin_file), endpoint), env=hsm.env)
    assert_one_line_error(proc, "2 certificates match")
    for name in ("tokA", "tokB"):
        assert f"pkcs11:token={name};serial=" in proc.stderr and f"CN={name}" in proc.stderr
    assert "object=same;id=%01;type=cert" in proc.stderr and "notAfter" in proc.stderr


def test_certificate_without_key(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    hsm.init_token("tok")
    hsm.write_cert("tok", pki.leaf("ec-p256", cn="lonely").cert, "c", "05")
    assert_one_line_error(run_cli(_cp(hsm.uri("tok", "c"), endpoint), env=hsm.env), "no private key on token 'tok'")


def test_key_without_certificate(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    hsm.init_token("tok")
    hsm.import_key("tok", pki.leaf("ec-p256").key, "k", "06", method="pkcs11-tool")
    assert_one_line_error(run_cli(_cp(hsm.uri("tok", "k"), endpoint), env=hsm.env), "but no certificate for it")


def test_unsupported_key_type(hsm: SoftHSM, pki: PKI, endpoint: LocalEndpoint) -> None:
    from cryptography.hazmat.primitives.asymmetric import dsa

    from support.pki import issue

    key = dsa.generate_private_key(2048)
    hsm.init_token("tok")
    hsm.import_key("tok", key, "dsa", "07")
    hsm.write_cert("tok", issue("dsa leaf", issuer=pki.root, public_key=key.public_key()).cert, "dsa", "07")
    assert_one_line_error(run_cli(_cp(hsm.uri("tok", "dsa"), endpoint), env=hsm.env), "is a DSA key")


@pytest.mark.parametrize(
    ("uri", "phrase"),
    [
        ("pkcs11:tokn=tok", "unknown path attribute 'tokn'"),
        ("pkcs11:token=tok;token=x", "repeats the attribute token"),
        ("pkcs11:token=tok?pin-value=1&pin-source=file:/x", "both pin-value and pin-source"),
        ("pkcs11:token=t%zzok", "malformed percent-encoding"),
        ("pkcs11:token=tok?pin-source=https://x/pin", "is not a file: URI"),
    ],
)
def test_bad_uri(tok: SoftHSM, endpoint: LocalEndpoint, uri: str, phrase: str) -> None:
    assert_one_line_error(run_cli(_cp(uri, endpoint), env=tok.env), phrase)


def test_bad_uri_in_reference_flags(tok: SoftHSM, endpoint: LocalEndpoint) -> None:
    args = ["credential-process", "--certificate", "pkcs11:token=tok;objekt=k", "--endpoint", endpoint.url, *ARN_ARGS]
    assert_one_line_error(run_cli(args, env=tok.env), "--certificate: PKCS#11 URI has an unknown path attribute")
    args = ["read-certificate-data", "--pkcs11-uri", "pkcs11:id=%4"]
    assert_one_line_error(run_cli(args, env=tok.env), "malformed percent-encoding")


def test_no_pin_and_no_terminal_fails_at_once(tok: SoftHSM, endpoint: LocalEndpoint) -> None:
    proc = run_cli(_cp(tok.uri("tok", "k", pin=False), endpoint), env=tok.env, timeout=20)
    assert_one_line_error(proc, "no terminal")
    assert "ROLESANYWHERE_SIGNER_PKCS11_PIN" in proc.stderr


def test_missing_pin_source_file(tok: SoftHSM, endpoint: LocalEndpoint) -> None:
    proc = run_cli(_cp("pkcs11:token=tok;object=k?pin-source=file:/nonexistent/pin", endpoint), env=tok.env)
    assert_one_line_error(proc, "PKCS#11 PIN file /nonexistent/pin does not exist")
