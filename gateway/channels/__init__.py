"""Channel adapters: each owns its routes, its parsing/verification and its outbound API."""
