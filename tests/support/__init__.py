"""Shared test machinery: real services, real processes, receivers that count side effects."""
