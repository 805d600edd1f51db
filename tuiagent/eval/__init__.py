"""`tuiagent eval`: task suites run N times per arm (a tier or a config) within one cap,
summarised per task and arm, compared with a baseline (the CI gate)."""
