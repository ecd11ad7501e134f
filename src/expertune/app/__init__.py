"""Composition roots: the only place that wires train AND evaluate."""
