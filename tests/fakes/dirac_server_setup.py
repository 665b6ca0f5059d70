"""Set up a DiracX test server's files (run in the server's environment, one process):

    python dirac_server_setup.py ROOT VO GROUP USER SUB

ROOT/keys.json (the token signing key), ROOT/cs (the configuration repository with
the VO, its group and user), and on stdout the database settings as JSON
(``DIRACX_DB_URL_*``: sqlite files under ROOT/db). The same steps as
``python -m diracx.logic rotate-jwk``, ``dirac internal generate-cs/add-vo/add-user``
and ``python -m diracx.db generate-local-urls``, without five interpreter start-ups.
"""

import contextlib
import io
import json
import shlex
import sys
from pathlib import Path

from diracx.cli.internal.config import add_user, add_vo, generate_cs
from diracx.db.__main__ import generate_local_urls
from diracx.logic.__main__ import new_key, save_jwks
from joserfc.jwk import KeySet


def main(root, vo, group, user, sub) -> None:
    root = Path(root)
    (root / "db").mkdir(parents=True, exist_ok=True)
    save_jwks(root / "keys.json", KeySet(keys=[new_key()]))
    cs = f"git+file://{root}/cs"
    with contextlib.redirect_stdout(io.StringIO()):
        generate_cs(cs)
        add_vo(cs, vo=vo, default_group=group, idp_url="https://idp.invalid", idp_client_id=vo)
        add_user(cs, vo=vo, groups=[group], sub=sub, preferred_username=user)
    urls = io.StringIO()
    with contextlib.redirect_stdout(urls):
        generate_local_urls(str(root / "db"))
    env = {}
    for line in urls.getvalue().splitlines():  # export KEY="value" / export KEY='value'
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0]
    print(json.dumps(env))


if __name__ == "__main__":
    main(*sys.argv[1:])
