"""Getting certificates: the CA integrations (issuers) that turn a CSR into a certificate and chain.

``issuer.Issuer`` is the interface; each CA integration (ACM Private CA, an external command,
a test CA) is one module here implementing it. Commands pick an issuer; issuers never print.
"""
