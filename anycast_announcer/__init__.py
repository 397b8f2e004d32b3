"""anycast-announcer: announce an anycast prefix while, and only while, its services are healthy."""

__version__ = "0.1.0"

__all__ = ["__version__"]
