package pgsrc

// Query is the lock-graph query, for benchmarks of its parts.
var Query = query
