"""Training: stages, losses, schedules, checkpoints."""
