"""The web console: server-rendered pages under /console/ for the people who run the programme.

Pages call the same service functions as the API (never SQL in a view) and are guarded by the
same permission table; a console session replaces the API key (see auth/sessions.py).
"""
