"""Events out: the transactional outbox (`outbox.record`), the renderers that make an
event's `data` what the API would answer at that moment (`render`), and the feed that
never skips (`feed`)."""
