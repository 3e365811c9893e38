"""The qqbot channel: adapter, settings and platform client."""
