"""rightsizer: Kubernetes requests and limits computed from what containers really used."""

__version__ = "0.1.0"
