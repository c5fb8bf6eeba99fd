"""The scheduler process: APScheduler decides *when*; actors do the work."""
