"""Test helpers that start real services on 127.0.0.1: a multi-node Ray cluster and a local S3 server."""
