"""Dashboards for admins and researchers: batch, annotator and model figures, drawn as inline SVG."""
