"""catdog serve: the app, its routes (its own, v2 protocol, labelling), auth, batching, admission,
answering, metrics; predict and the servable check."""
