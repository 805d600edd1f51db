"""Talking to the model: the real SDK client, usage capture, caching, the offline model."""
