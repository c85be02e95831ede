package arena

import (
	"fmt"

	"github.com/lockwatch/lockwatch/procid"
)

// ProcessInfo is what a process records of itself in the run directory,
// beside its process-table entry.
type ProcessInfo struct {
	PID    int      `json:"pid"`
	Start  uint64   `json:"start"`
	Exe    string   `json:"exe"`
	Args   []string `json:"args"`
	Role   string   `json:"role,omitempty"`
	Robust bool     `json:"robust"`
	Why    string   `json:"no_robust_reason,omitempty"`
	Go     string   `json:"go"`
}

// processFile returns the base name of a process's files in the run directory.
func ProcessFile(id procid.ID, ext string) string {
	return fmt.Sprintf("p-%d-%d.%s", id.PID, id.Start, ext)
}
