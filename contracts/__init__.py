"""Message contracts: pure pydantic models, topology names and the projection. No IO."""
