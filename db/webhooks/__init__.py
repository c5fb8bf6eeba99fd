"""Webhooks: subscriptions (service), the fan-out from the event feed and the claims of
due deliveries (dispatch), one HTTP attempt and its bookkeeping (delivery), the circuit
breaker (breaker), the SSRF guard (ssrf) and secrets at rest (secrets)."""
