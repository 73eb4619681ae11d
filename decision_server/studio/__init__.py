"""The rule studio: drafts based on a revision, their validation, cases, traces, what-ifs and publication."""
