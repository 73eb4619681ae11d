"""Any other console URL: a page saying so (inside the layout when signed in), not the API's JSON 404."""

from __future__ import annotations

from decision_server.console.pages import SIGNED_IN, view
from decision_server.errors import NotFound


@view("/<path:rest>", permission=SIGNED_IN)
def missing(rest: str):
    """Answer 404 with the console's error page."""
    raise NotFound(f"there is no console page at /console/{rest}", code="page_not_found")
