package storetest

import (
	"os"
	"strconv"
	"syscall"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes on a new temporary directory and unmounts it when the test
// ends: a real small volume to fill up. Mounting needs root (CAP_SYS_ADMIN); where it fails the
// test is skipped, except under CI=true, where it fails, so the full-disk tests always run in CI.
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)+",mode=0700"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a %d-byte tmpfs (the full-disk tests need root): %v", size, err)
		}
		t.Skipf("cannot mount a tmpfs (needs root; required when CI=true): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file at path until the volume is full (ENOSPC) and returns its size; removing
// the file gives the space back.
func Fill(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			return n
		}
	}
}

// ResizeTmpfs grows (or shrinks) a tmpfs that Tmpfs mounted, as a volume expansion would.
func ResizeTmpfs(t testing.TB, dir string, size int64) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size="+strconv.FormatInt(size, 10)); err != nil {
		t.Fatalf("resize tmpfs %s: %v", dir, err)
	}
}
