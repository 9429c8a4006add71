"""n2nas: pipeline and architecture search for medical signals."""
