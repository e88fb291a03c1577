// Package procstat reads what the benchmarks and the memory tests measure of
// a process from Linux's /proc: resident memory and CPU time.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// PeakRSS is the peak resident set size (VmHWM) of pid in bytes.
func PeakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// RSS is the current resident set size (VmRSS) of pid in bytes.
func RSS(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// statusBytes reads a size field ("VmHWM:  1234 kB") of pid's /proc status.
func statusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// CPUTime is the user+system CPU time pid has used so far (0 if it cannot
// be read). /proc counts in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields start after the command name, which may contain spaces and ')'.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
