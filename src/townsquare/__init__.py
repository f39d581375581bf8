"""townsquare: a real-time backend on FastAPI."""

__version__ = "0.1.0"
