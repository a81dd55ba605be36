"""Shared plumbing of the services: generated gRPC stubs (hitl.v1), configuration,
logging and the gRPC server and channel lifecycle."""
