"""Hostile and broken inputs, one test per class found (issue 17); the suite grows with each new class."""
