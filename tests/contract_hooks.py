"""Schemathesis hooks for tests/test_contract.py (loaded by the CLI through SCHEMATHESIS_HOOKS).

They keep the fuzzer from two things the API rightly allows an admin: revoking the admin key the
run itself uses (everything after would be a 401), and pointing a catalog connector at a host on
the internet that a sync would then fetch. Neither changes what is checked: the key id becomes
another id, the URL's host becomes 127.0.0.1 with a closed port.
"""

from __future__ import annotations

import os
import urllib.parse

import schemathesis

# Port 9 (discard) is closed on the test machine: a sync fails at once with a recorded run.
LOCAL = "127.0.0.1:9"


@schemathesis.hook
def before_call(context, case, kwargs):
    """Spare the run's own admin key; keep every connector URL on this machine."""
    path = case.operation.path
    if path.endswith("/keys/{key_id}") and case.method == "DELETE":
        if str((case.path_parameters or {}).get("key_id")) == os.environ["CONTRACT_ADMIN_KEY_ID"]:
            case.path_parameters["key_id"] = int(os.environ["CONTRACT_ADMIN_KEY_ID"]) + 1_000_000
    if "/catalog/connectors" in path and isinstance(case.body, dict) and isinstance(case.body.get("url"), str):
        try:
            parts = urllib.parse.urlsplit(case.body["url"])
            outside = parts.hostname not in (None, "127.0.0.1", "localhost")
        except ValueError:  # not a URL at all: the server refuses it, so it is sent as it is
            return
        if outside:
            case.body["url"] = urllib.parse.urlunsplit(parts._replace(netloc=LOCAL))
