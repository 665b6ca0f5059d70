"""Mint a DiracX access token with the test server's key (run in the server's environment).

    python dirac_mint_token.py ISSUER KEYS SUB USERNAME VO GROUP PROPERTY[,PROPERTY] LIFETIME_S

The server checks only a token's signature and issuer, so the tests mint tokens for any
identity and properties (NormalUser, JobAdministrator...) instead of running an identity
provider. A negative lifetime gives an expired token. Prints the token.
"""

import sys
import uuid
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet
from diracx.core.models.auth import AccessTokenPayload
from diracx.core.settings import AuthSettings
from diracx.logic.auth.token import create_token


def main(issuer, keys, sub, username, vo, group, properties, lifetime) -> None:
    settings = AuthSettings(
        token_issuer=issuer, token_keystore=f"file://{keys}", state_key=Fernet.generate_key()
    )
    payload = AccessTokenPayload(
        jti=str(uuid.uuid4()),
        exp=datetime.now(tz=UTC) + timedelta(seconds=int(lifetime)),
        dirac_policies={},
        sub=sub,
        vo=vo,
        iss=issuer,
        dirac_properties=properties.split(","),
        preferred_username=username,
        dirac_group=group,
    )
    print(create_token(payload, settings))


if __name__ == "__main__":
    main(*sys.argv[1:])
