"""HTTP APIs and pages: one bearer resolver (auth.py), the agent, admin and reports APIs, the web pages."""
