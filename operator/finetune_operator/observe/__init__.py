"""Observation (pure): Job, pod and trainer log into status, conditions and progress."""
