"""The console's screens; importing this registers them (the import order is the menu's order)."""

from decision_server.console.screens import (  # noqa: F401
    clv,
    customers,
    lifecycle,
    missing,  # noqa: F401  (last: its catch-all route)
    overview,
    rfm,
    signin,
    value,
)
