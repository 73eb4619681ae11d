"""decision-server: real-time next-best-action decisioning for marketing and loyalty teams."""

__version__ = "0.1.0"


def create_app(config=None):
    """Build the WSGI application (imported lazily so that importing the package does nothing)."""
    from decision_server.app import create_app as _create_app

    return _create_app(config)
