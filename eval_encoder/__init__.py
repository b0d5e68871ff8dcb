"""Attentive-probe evaluation of frozen video encoders for action recognition."""

__version__ = "0.1.0"
