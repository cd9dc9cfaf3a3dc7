"""Snoop: records every file a container workload touches, to slim its image."""
