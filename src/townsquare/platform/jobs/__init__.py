"""Background jobs: taskiq, on a Redis stream or in process (engine.py)."""

from townsquare.platform.jobs.engine import Jobs, JobsUnavailable

__all__ = ["Jobs", "JobsUnavailable"]
