"""Customer search (id, name, email) and the customer 360 page."""

from __future__ import annotations

from flask import current_app, redirect, request, url_for

from decision_server.auth.roles import Permission
from decision_server.console.pages import page, view
from decision_server.console.render import render
from decision_server.customers import service as customers

PAGE_SIZE = 25


@page("/customers", title="Customers", group="Customers", permission=Permission.CUSTOMERS_READ, position=0)
def customer_search():
    """Find customers by id, name or email; one exact id match opens the customer at once."""
    q = (request.args.get("q") or "").strip()[:100]
    after = request.args.get("after", type=int)
    with current_app.extensions["database"].session() as session:
        rows = customers.list_customers(session, limit=PAGE_SIZE, after=[after] if after else None, q=q or None)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if q and not after and len(rows) == 1 and rows[0]["external_id"] == q:
        return redirect(url_for("console.customer", customer_id=q))
    return render("console/customers.html", title="Customers", q=q, rows=rows, more=more)


@view("/customers/<string:customer_id>", permission=Permission.CUSTOMERS_READ)
def customer(customer_id: str):
    """The customer 360: profile header (more tabs come with the 360 screen)."""
    with current_app.extensions["database"].session() as session:
        profile = customers.get_customer(session, external_id=customer_id)
    return render("console/customer.html", title=f"Customer {customer_id}", customer=profile)
