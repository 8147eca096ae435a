"""Operator-side libraries behind jobctl: batch status, redrive, quick-start resources, scaling replay."""
