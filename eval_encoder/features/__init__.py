"""Features out of an encoder: pooling tokens to one vector per clip (``pool.py``)."""
