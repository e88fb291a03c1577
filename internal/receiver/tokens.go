package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// tokenFile is one token read from a file (a Kubernetes Secret volume key). Kubernetes updates such
// files by swapping a symlink, so we simply re-read the content on every poll; that catches every
// kind of update, costs a tiny read, and needs no inotify.
type tokenFile struct {
	path     string
	required bool                     // the current token must exist; the previous one may be absent
	hash     atomic.Pointer[[32]byte] // nil = no token
}

// load re-reads the file. A required token that cannot be read keeps its last good value (a Secret
// update is never half-visible, but a transient read error must not lock everyone out).
func (f *tokenFile) load(log *slog.Logger) error {
	b, err := os.ReadFile(f.path)
	tok := bytes.TrimSpace(b)
	if err == nil && len(tok) == 0 {
		err = fmt.Errorf("token file %s is empty", f.path)
	}
	if err != nil {
		if f.required {
			return err
		}
		if f.hash.Swap(nil) != nil {
			log.Info("token removed", "file", f.path)
		}
		return nil
	}
	h := sha256.Sum256(tok)
	if old := f.hash.Swap(&h); old != nil && *old != h {
		log.Info("token changed", "file", f.path)
	}
	return nil
}

// tokens authenticates requests against one or more token files.
type tokens struct {
	header string // e.g. "Authorization"
	files  []*tokenFile
}

func newTokens(header string, current, previous string, log *slog.Logger) (*tokens, error) {
	t := &tokens{header: header}
	t.files = append(t.files, &tokenFile{path: current, required: true})
	if previous != "" {
		t.files = append(t.files, &tokenFile{path: previous})
	}
	for _, f := range t.files {
		if err := f.load(log); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// watch reloads the files every interval until ctx ends.
func (t *tokens) watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, f := range t.files {
				if err := f.load(log); err != nil {
					log.Warn("cannot reload token; keeping the previous value", "file", f.path, "err", err)
				}
			}
		}
	}
}

// check reports whether the request carries a valid token: "Bearer <token>" (or, for a custom
// header, the bare token). Comparison is constant-time over fixed-length hashes, and every known
// token is compared, so timing reveals neither the token nor which one matched.
func (t *tokens) check(r *http.Request) bool {
	v := strings.TrimSpace(r.Header.Get(t.header))
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		v = strings.TrimSpace(v[7:])
	} else if strings.EqualFold(t.header, "Authorization") {
		return false
	}
	if v == "" {
		return false
	}
	got := sha256.Sum256([]byte(v))
	ok := 0
	for _, f := range t.files {
		if h := f.hash.Load(); h != nil {
			ok |= subtle.ConstantTimeCompare(got[:], h[:])
		}
	}
	return ok == 1
}
