"""sandbank: virtual agentic sandbox economies for distributional AGI safety."""

__version__ = "0.1.0"
