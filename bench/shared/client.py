"""The raw Redis client of the shared-mode benchmarks for a coopcache URL: redis-py's `Redis` for
`redis://`, its `RedisCluster` for `redis+cluster://` (the seeds as startup nodes), so a raw
read goes through the client a Python user has for that deployment."""

from __future__ import annotations

from typing import Any


def is_cluster(url: str) -> bool:
    return url.split("://", 1)[0].endswith("+cluster")


def cluster_nodes(url: str) -> list[Any]:
    """redis-py `ClusterNode`s of a `redis+cluster://host:port,host:port` URL's seeds."""
    from redis.cluster import ClusterNode

    seeds = url.split("://", 1)[1].rsplit("@", 1)[-1].split("/", 1)[0]
    return [ClusterNode(h, int(p)) for h, p in (s.rsplit(":", 1) for s in seeds.split(","))]


def redis_client(url: str) -> Any:
    import redis

    if is_cluster(url):
        from redis.cluster import RedisCluster

        return RedisCluster(startup_nodes=cluster_nodes(url))
    return redis.Redis.from_url(url)
