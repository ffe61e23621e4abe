"""The leaf checks are decided once (certs.py) and credential-process, doctor and local-endpoint agree."""

from __future__ import annotations

import datetime as dt

import pytest

from rolesanywhere_signer import certs
from rolesanywhere_signer.errors import CertificateError
from support.pki import PKI, Issued, issue, now


def _bad_leaves(pki: PKI) -> dict[str, Issued]:
    return {
        certs.IS_CA: issue("ca as leaf", issuer=pki.root, ca=True),
        certs.NO_DIGITAL_SIGNATURE: issue("no ds", issuer=pki.root, digital_signature=False),
        certs.EXPIRED: issue(
            "expired", issuer=pki.root, not_before=now() - dt.timedelta(days=30), not_after=now() - dt.timedelta(days=1)
        ),
        certs.NOT_YET_VALID: issue("future", issuer=pki.root, not_before=now() + dt.timedelta(days=1)),
    }


def test_each_refusal_is_found_once_and_every_consumer_refuses(pki: PKI) -> None:
    for expected, leaf in _bad_leaves(pki).items():
        t = now()
        found = certs.certificate_issues(leaf.cert, t) + certs.end_entity_issues(leaf.cert)
        assert found == [expected], (expected, found)
        with pytest.raises(CertificateError):
            certs.check_leaf(leaf.cert, t)  # credential-process
        with pytest.raises(certs.PathRefused) as refused:
            certs.verify_path(leaf.cert, [], [pki.root.cert], t)  # local-endpoint and doctor's trust-anchor row
        assert refused.value.detail


def test_a_good_leaf_passes_everywhere(pki: PKI) -> None:
    leaf = pki.leaf(via_intermediate=True)
    t = now()
    assert certs.certificate_issues(leaf.cert, t) == [] and certs.end_entity_issues(leaf.cert) == []
    certs.check_leaf(leaf.cert, t)
    certs.verify_path(leaf.cert, [pki.intermediate.cert], [pki.root.cert], t)
    with pytest.raises(certs.PathRefused) as refused:
        certs.verify_path(leaf.cert, [], [pki.root.cert], t)  # no path without the intermediate
    assert refused.value.detail == ""
