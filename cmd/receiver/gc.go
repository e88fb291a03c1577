package main

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent trades a little memory for CPU: the receiver's live heap is small (bodies in
// flight plus buffers), so the default GOGC=100 collects very often under load. Measured with
// make bench-receiver, see README "Tuning".
const defaultGCPercent = 400

// tuneGC applies defaultGCPercent unless GOGC is set, and bounds the heap with a soft memory limit
// unless GOMEMLIMIT is set: 90 % of the container's memory limit (cgroup v2 memory.max) when there
// is one, else 4 x --max-in-flight-bytes (the bodies admission control lets in, with room for
// their copies and the rest of the heap). The limit makes the GC work harder instead of letting
// the larger GOGC grow the heap past what the Pod may use.
func tuneGC(maxInFlightBytes int64, log *slog.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, source := 4*maxInFlightBytes, "4 x --max-in-flight-bytes"
	if c := cgroupMemoryLimit(); c > 0 {
		limit, source = c/10*9, "90% of the cgroup memory limit"
	}
	debug.SetMemoryLimit(limit)
	log.Debug("Go memory limit set", "bytes", limit, "from", source)
}

// cgroupMemoryLimit returns the cgroup v2 memory limit of this process in bytes, or 0 if none.
func cgroupMemoryLimit() int64 {
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64) // "max" = no limit
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
