"""What happens to a signal once it is issued: the scheduled scan that finds and tracks signals (``scanner``)."""
