"""Talking to the model: the seam (provider.py), the real SDK client, the model rules, and
tokens: the estimate, the usage the API reports, and prompt caching."""
