"""Validation, reports and plots."""
