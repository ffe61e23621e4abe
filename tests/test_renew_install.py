"""Installing a renewed pair: kill -9 at any point leaves a consistent, usable pair; key-file switches.

The kill test forks a child that installs two pairs in turn, as fast as it can (each leaf from a
different intermediate, so a leaf with the other's chain would fail the chain check), and kills it
at a random moment, 50 times. After each kill the files must load as a matching pair.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from cryptography import x509

from rolesanywhere_signer.backends import load_signer
from rolesanywhere_signer.certs import issues
from rolesanywhere_signer.enroll.install import NEXT, install_certificate, repair
from rolesanywhere_signer.options import IdentityOptions
from support.pki import PKI, issue


def test_kill_9_during_install_always_leaves_a_consistent_pair(pki: PKI, tmp_path: Path) -> None:
    key = pki.leaf().key
    inter_a = issue("Intermediate A", issuer=pki.root, ca=True)
    inter_b = issue("Intermediate B", issuer=pki.root, ca=True)
    pairs = [
        (issue("host", issuer=inter_a, key=key).cert, (inter_a.cert,)),
        (issue("host", issuer=inter_b, key=key).cert, (inter_b.cert,)),
    ]
    cert, chain, key_path = tmp_path / "host.crt", tmp_path / "chain.pem", tmp_path / "host.key"
    key_path.write_bytes(pki.leaf_files("k", pki.leaf(key=key))[1].read_bytes())
    install_certificate(str(cert), str(chain), *pairs[0])
    install_certificate(str(cert), str(chain), *pairs[1])  # from here on a .prev pair exists too
    identity = IdentityOptions(certificate=str(cert), private_key=str(key_path), intermediates=str(chain))
    rng = random.Random(17)
    serials = set()
    for _ in range(50):
        pid = os.fork()
        if pid == 0:  # the child: install, install, install... until killed
            try:
                i = 0
                while True:
                    install_certificate(str(cert), str(chain), *pairs[i % 2])
                    i += 1
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        signer = load_signer(identity)
        try:
            assert len(signer.chain) == 1 and issues(signer.chain[0], signer.certificate)
            serials.add(signer.certificate.serial_number)
        finally:
            signer.close()
        prev = x509.load_pem_x509_certificates((tmp_path / "host.crt.prev").read_bytes())
        assert issues(prev[1], prev[0])  # the previous pair is whole too
    assert len(serials) == 2  # the kills landed on both sides of the switch


def test_repair_finishes_an_interrupted_key_switch(pki: PKI, tmp_path: Path) -> None:
    old, new = pki.leaf(), pki.leaf()
    cert, key = tmp_path / "host.crt", tmp_path / "host.key"
    key.write_bytes(old.key_pem())
    (tmp_path / ("host.key" + NEXT)).write_bytes(new.key_pem())
    cert.write_bytes(new.pem)  # the certificate switched, then the process died
    identity = IdentityOptions(certificate=str(cert), private_key=str(key))
    assert "finished switching" in (repair(identity) or "")
    assert key.read_bytes() == new.key_pem()
    assert (tmp_path / "host.key.prev").read_bytes() == old.key_pem()
    load_signer(identity).close()


def test_repair_drops_a_new_key_that_never_got_its_certificate(pki: PKI, tmp_path: Path) -> None:
    old, new = pki.leaf(), pki.leaf()
    cert, key = tmp_path / "host.crt", tmp_path / "host.key"
    key.write_bytes(old.key_pem())
    (tmp_path / ("host.key" + NEXT)).write_bytes(new.key_pem())
    cert.write_bytes(old.pem)
    identity = IdentityOptions(certificate=str(cert), private_key=str(key))
    assert "removed" in (repair(identity) or "")
    assert not (tmp_path / ("host.key" + NEXT)).exists()
    assert key.read_bytes() == old.key_pem()


def test_a_symlinked_certificate_is_not_replaced(pki: PKI, tmp_path: Path) -> None:
    import pytest

    from rolesanywhere_signer.errors import InputError

    leaf = pki.leaf()
    real = tmp_path / "real.crt"
    real.write_bytes(leaf.pem)
    link = tmp_path / "host.crt"
    link.symlink_to(real)
    with pytest.raises(InputError, match="symlink"):
        install_certificate(str(link), None, leaf.cert, ())
    assert real.read_bytes() == leaf.pem
