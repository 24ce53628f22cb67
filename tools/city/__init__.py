"""City side of the Phitsanulok transit system: the bridge from the broker to
a GTFS-Realtime feed, a live operations page and the planners' export
(docs/city.md)."""
