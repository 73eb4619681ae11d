"""setup.cfg lists every package (it must, because migrations/ is mapped into the package)."""

from __future__ import annotations

import configparser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_in_setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    listed = set(parser["options"]["packages"].split())
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "decision_server").rglob("__init__.py")}
    assert found | {"decision_server.migrations", "decision_server.default_rules"} == listed


def test_wheel_ships_the_migrations(tmp_path):
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("decision_server-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {name.rsplit("/", 1)[-1] for name in names if name.startswith("decision_server/migrations/")}
    expected = {path.name for path in (REPO / "migrations").rglob("*") if path.suffix in (".py", ".mako")}
    assert expected <= shipped
    assert "decision_server/cli.py" in names
    rules = {path.name for path in (REPO / "rules").glob("*.yaml")}
    assert rules and {f"decision_server/default_rules/{name}" for name in rules} <= set(names)
    console = REPO / "decision_server" / "console"
    assets = {
        f"decision_server/console/{path.relative_to(console).as_posix()}"
        for folder in ("static", "templates")
        for path in (console / folder).rglob("*")
        if path.is_file()
    }
    assert {"decision_server/console/static/console.js", "decision_server/console/static/charts.js"} <= assets <= set(names)
