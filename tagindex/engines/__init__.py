"""Batch engines that tag catalogs too large for one process.

:mod:`tagindex.engines.shards` splits a products source into numbered batches, tags a batch with the
same core call as the in-process ``tagindex tag`` and commits each batch as one Parquet shard
(atomically, so a rerun skips finished shards). :mod:`tagindex.engines.ray_engine` runs those batches
on a pool of Ray actors (``tagindex tag --engine ray``; needs ``tagindex[scale]``).

The core (``tagindex/*``) never imports this package.
"""
