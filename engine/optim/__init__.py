"""Optimizers the topics train with."""
