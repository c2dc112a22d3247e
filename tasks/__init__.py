"""Prefect tasks: thin wrappers that run catdog's DVC stages and publish run reports."""
