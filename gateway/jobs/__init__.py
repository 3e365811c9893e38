"""Background work: outbox delivery, the handoff timers (idle, first response, catch-up), follow-ups."""
