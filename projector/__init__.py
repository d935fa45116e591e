"""The projector: folds status events, submissions and dead letters into the MongoDB read model."""
