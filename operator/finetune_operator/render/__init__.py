"""Rendering (pure): a FineTuneJob into the trainer config files, ConfigMap and Job."""
