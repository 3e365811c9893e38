"""The web channel: adapter, settings and platform client."""
