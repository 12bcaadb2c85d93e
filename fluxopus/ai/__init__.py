"""Model providers, prompt templates and token accounting."""
