"""The local web app of `tinyarch serve` (see app.py)."""
