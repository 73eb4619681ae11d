"""HTTP routes for customers."""

from __future__ import annotations

from flask.views import MethodView

from decision_server.auth.roles import Permission, requires
from decision_server.customers import schemas, service
from decision_server.schemas import page_response
from decision_server.web import Blueprint, transaction

blp = Blueprint("customers", __name__, url_prefix="/customers", description="Customers and their state")


@blp.route("")
class Customers(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.arguments(schemas.CustomerQuerySchema, location="query")
    @blp.response(200, schemas.CustomerPageSchema)
    def get(self, query):
        """List customers, oldest first, with filters and keyset pagination."""
        limit, cursor = query.pop("limit"), query.pop("cursor", None)
        with transaction() as session:
            rows = service.list_customers(session, limit=limit, after=cursor, **query)
        return page_response(rows, limit)

    @requires(Permission.DATA_WRITE)
    @blp.arguments(schemas.CustomerCreateSchema)
    @blp.response(201, schemas.CustomerSchema)
    def post(self, body):
        """Create a customer."""
        with transaction(write=True) as session:
            return service.create_customer(session, **body)


@blp.route("/<string:customer_id>")
class Customer(MethodView):
    @requires(Permission.CUSTOMERS_READ)
    @blp.response(200, schemas.CustomerSchema)
    def get(self, customer_id):
        """Get one customer with its current state."""
        with transaction() as session:
            return service.get_customer(session, external_id=customer_id)

    @requires(Permission.DATA_WRITE)
    @blp.arguments(schemas.CustomerUpdateSchema)
    @blp.response(200, schemas.CustomerSchema)
    def patch(self, body, customer_id):
        """Change some of a customer's fields."""
        with transaction(write=True) as session:
            return service.update_customer(session, external_id=customer_id, changes=body)
