"""WSGI entry points for production servers: `decision_server.wsgi:application()` as a factory."""

from decision_server.app import create_app


def application():
    """Build the app from the environment (granian and gunicorn call this in each worker)."""
    return create_app()
