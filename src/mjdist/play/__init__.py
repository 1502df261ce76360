"""The `play` command's parts: its configuration, what acts, the rollout and its summary, headless video."""
