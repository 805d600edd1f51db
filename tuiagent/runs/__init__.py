"""A run on disk: its layout, the log, the transcript, its records."""
