"""Real re-ID dataset layouts (filled in below)."""
