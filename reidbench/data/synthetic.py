"""Synthetic re-ID generator."""
