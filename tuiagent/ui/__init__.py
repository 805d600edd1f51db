"""The Textual app: the only Textual code in tuiagent. The core never imports it."""
