"""setup.cfg lists every package (it must, because migrations/ is mapped into the package)."""

from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    listed = set(parser["options"]["packages"].split())
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "decision_server").rglob("__init__.py")
    }
    assert found | {"decision_server.migrations"} == listed
