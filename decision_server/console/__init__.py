"""The web console (a Flask blueprint under /console/); its JS bundles are built from frontend/ into static/."""
