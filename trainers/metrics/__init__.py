"""Metrics of a trial: training dynamics, mode coverage, FID."""
