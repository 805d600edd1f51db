"""A cache miss cause (the API's word for it, or the proxy's: tuiagent/proxy/causes.py) in
the words a user reads. Nothing imported: `tuiagent statusline` reads it too."""

MISS_WORDS = {
    "model_changed": "another model",
    "tools_changed": "the tools changed",
    "system_changed": "the system prompt changed",
    "messages_changed": "an earlier message changed",
    "expired": "the cache entry expired",
    "below_minimum": "below the minimum cacheable length",
    "previous_message_not_found": "the previous call is unknown",
    "unavailable": "the cache was not available",
}
