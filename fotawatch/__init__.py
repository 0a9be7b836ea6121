"""fotawatch: watch Verizon ThingSpace FOTA v3 campaigns and say when they change."""

__version__ = "0.1.0"
__all__ = ["__version__"]
