"""Handoff to human agents: conversation states, queue, routing, presence, CSAT — pure logic."""
