"""The wechat channel: adapter, settings and platform client."""
