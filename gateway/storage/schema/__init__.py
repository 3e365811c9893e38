"""The tables: core (customers, conversations, messages, outbox, audit) and handoff (agents, assignments, …)."""
