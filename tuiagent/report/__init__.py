"""Reports over run logs: build, attribution, causes, the tables, the OTLP export."""
