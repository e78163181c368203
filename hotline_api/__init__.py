"""12388 hotline service: the composition root that wires telephony/, asr/ and recordings/."""
__version__ = "0.1.0"
