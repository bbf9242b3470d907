"""Versioned preference datasets: export runs, their JSONL/Parquet files and manifests, and imports."""
