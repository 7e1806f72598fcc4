"""pipecache: a tiered read cache for S3 data in machine-learning pipelines."""

__version__ = "0.1.0"
