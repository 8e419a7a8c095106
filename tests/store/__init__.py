"""Tests of the Store port and its implementations."""
