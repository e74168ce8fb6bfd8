"""Command-line front end (`bitnet`). Heavy imports happen inside command bodies."""
