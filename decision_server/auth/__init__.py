"""API keys, roles and the permission check every API call goes through."""
