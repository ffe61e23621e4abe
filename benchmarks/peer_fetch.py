"""The Python peer, ``iam-rolesanywhere-session``, doing what ``credential-process`` does.

Run as a fresh process: build the peer's session for the local endpoint, fetch credentials once
(one CreateSession), print credential_process JSON. The CA bundle comes from ``AWS_CA_BUNDLE``,
passed to the peer's ``verify`` (it does not read the variable itself).

    python peer_fetch.py CERT KEY HOST:PORT TRUST_ANCHOR_ARN PROFILE_ARN ROLE_ARN
"""

import json
import os
import sys

from iam_rolesanywhere_session import IAMRolesAnywhereSession


def main(argv: list[str]) -> int:
    cert, key, endpoint, anchor, profile, role = argv
    session = IAMRolesAnywhereSession(
        profile_arn=profile,
        role_arn=role,
        trust_anchor_arn=anchor,
        certificate=cert,
        private_key=key,
        region=anchor.split(":")[3],
        endpoint=endpoint,
        verify=os.environ.get("AWS_CA_BUNDLE", True),
    )
    frozen = session.get_refreshable_credentials().get_frozen_credentials()
    doc = {
        "Version": 1,
        "AccessKeyId": frozen.access_key,
        "SecretAccessKey": frozen.secret_key,
        "SessionToken": frozen.token,
    }
    sys.stdout.write(json.dumps(doc) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
