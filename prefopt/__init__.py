"""prefopt: compare preference-optimization methods (KTO, DPO, ORPO, ...) on one binary-labeled dataset."""

__version__ = "0.1.0"
