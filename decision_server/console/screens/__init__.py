"""The console's screens; importing this registers them (the import order is the menu's order)."""

from decision_server.console.screens import (  # noqa: F401
    clv,
    customers,
    journeys,
    lifecycle,
    missing,  # noqa: F401  (the catch-all route ranks last whatever the order)
    overview,
    rfm,
    segments,
    signin,
    value,
)
