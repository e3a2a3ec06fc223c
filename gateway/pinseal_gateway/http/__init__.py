"""The gateway's HTTP side: server (routes, startup), the JSON/CSV API, the dashboard, auth, query parsing."""
