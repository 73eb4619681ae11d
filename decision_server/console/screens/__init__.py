"""The console's screens; importing this registers them (the menu's order comes from each page's group and position)."""

from decision_server.console.screens import (  # noqa: F401
    clv,
    customers,
    journeys,
    lifecycle,
    loyalty,
    missing,  # the catch-all route ranks last whatever the order
    offers,
    overview,
    rfm,
    segments,
    signin,
    studio,
    studio_cases,
    studio_editor,
    studio_form,
    studio_trace,
    studio_whatif,
    value,
)
