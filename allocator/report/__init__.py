"""Plots and reports of plans."""
