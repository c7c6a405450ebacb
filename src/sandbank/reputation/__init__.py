"""Reputation from verified outcomes, graph trust, and reputation-gated access."""
