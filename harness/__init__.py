"""What runs the registry's models: specs, complexity, the command line (and, later, training)."""

__version__ = "0.1.0"
