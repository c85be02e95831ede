package inproc

// This package's tests read the drop-in's records: the records mode.
func init() { WantRecords() }
