"""Prefect flows of the catdog pipeline."""
