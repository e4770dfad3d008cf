"""Cross-modal retrieval: an embedding index (Parquet shards + FAISS), search, result pages with thumbnails."""
from .build import BuildOptions, BuildReport, build_index
from .index import Index, Query, SearchResult, read_queries
from .store import IndexStoreError

__all__ = ["BuildOptions", "BuildReport", "Index", "IndexStoreError", "Query", "SearchResult", "build_index",
           "read_queries"]
