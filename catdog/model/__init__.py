"""The spec network and how it is trained and explained: network, precision, input batches, training
callbacks, why-maps."""
