"""FineTuneJob operator: fine-tuning with the Phison aiDAPTIV+ trainer on Kubernetes."""

__version__ = "0.1.0"
