"""CA integrations: a CSR goes in, a certificate and its chain come out (see ``issuer.py``)."""
