"""Test and benchmark tooling (not shipped in the wheel): fault proxy, IAM evaluator, call recorder, helpers."""
