package cache

import "github.com/prometheus/client_golang/prometheus"

// RegisterMetrics exports c's counters on reg, read when scraped.
func RegisterMetrics(reg prometheus.Registerer, c *NodeCache) {
	counter := func(name, help string, f func(Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(c.Stats())) }))
	}
	gauge := func(name, help string, f func(Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(c.Stats()) }))
	}
	counter("gridd_nodecache_hits_total", "Downloads served from memory.", func(s Stats) uint64 { return s.Hits })
	counter("gridd_nodecache_misses_total", "Downloads of a level not in memory.", func(s Stats) uint64 { return s.Misses })
	counter("gridd_nodecache_peer_hits_total", "Levels fetched from a peer node cache.", func(s Stats) uint64 { return s.PeerHits })
	counter("gridd_nodecache_peer_failures_total", "Peer fetches that failed and fell back to the central cache.", func(s Stats) uint64 { return s.PeerFailures })
	counter("gridd_nodecache_upstream_fetches_total", "Levels read in full from the central cache.", func(s Stats) uint64 { return s.UpstreamFetches })
	counter("gridd_nodecache_latest_lookups_total", "Requests for the latest level, resolved at the central cache (header only).", func(s Stats) uint64 { return s.LatestLookups })
	counter("gridd_nodecache_pass_throughs_total", "Downloads too large to keep, relayed from the central cache.", func(s Stats) uint64 { return s.PassThroughs })
	counter("gridd_nodecache_evictions_total", "Levels dropped to make room.", func(s Stats) uint64 { return s.Evictions })
	counter("gridd_nodecache_expirations_total", "Levels dropped because their TTL passed.", func(s Stats) uint64 { return s.Expirations })
	counter("gridd_nodecache_served_bytes_total", "Payload bytes sent to readers.", func(s Stats) uint64 { return s.BytesServed })
	counter("gridd_nodecache_fetched_bytes_total", "Payload bytes received from peers and the central cache.", func(s Stats) uint64 { return s.BytesFetched })
	gauge("gridd_nodecache_bytes", "Bytes held (payloads plus per-entry overhead).", func(s Stats) float64 { return float64(s.Bytes) })
	gauge("gridd_nodecache_entries", "Levels held.", func(s Stats) float64 { return float64(s.Entries) })
}
