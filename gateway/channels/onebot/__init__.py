"""The onebot channel: adapter, settings and platform client."""
