package shim

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// trimMemory gives back what start-up touched and the steady state does not
// need: freed heap, and the executable's read-only pages (shared page cache,
// but counted in every shim's RSS). Pages the shim still uses fault back in.
func trimMemory() {
	debug.FreeOSMemory()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[5] != exe || strings.Contains(f[1], "w") {
			continue
		}
		start, end, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		s, err1 := strconv.ParseUint(start, 16, 64)
		e, err2 := strconv.ParseUint(end, 16, 64)
		if err1 != nil || err2 != nil || e <= s {
			continue
		}
		syscall.Syscall(syscall.SYS_MADVISE, uintptr(s), uintptr(e-s), syscall.MADV_DONTNEED)
	}
}
