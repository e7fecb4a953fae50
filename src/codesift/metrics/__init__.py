"""Evaluate modules that ship with the kit (each folder loads by itself with `evaluate.load(path)`)."""
