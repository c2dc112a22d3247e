"""The other half of the loop: what the served model saw and said (prediction_log, monitor), and the labelling queue."""
