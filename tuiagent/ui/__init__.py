"""The Textual UI: the only code that imports Textual."""
