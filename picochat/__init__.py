"""picochat: train your own small ChatGPT end to end, from the math up."""

__version__ = "0.1.0"
