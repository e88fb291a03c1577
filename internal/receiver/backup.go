package receiver

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/intuned-operator/intuned-operator/internal/receiver/store"
)

// backupSHA256Header carries the hex SHA-256 of a backup (GET) or of the uploaded file (PUT), so
// a copy can be checked with sha256sum. A header rather than a trailer: the file is complete
// before the answer starts, and a trailer would need chunked encoding instead of Content-Length.
const backupSHA256Header = "X-Backup-Sha256"

// uploadIdle is how long a restore upload may stall before the connection is closed: the
// server's ReadTimeout (60 s for the whole request) would cut a large upload short, so the
// deadline moves on with every read instead.
const uploadIdle = time.Minute

// backupEndpoint serves /v1/backup on a SQLite receiver: GET (read token) streams a consistent
// copy of the store taken while ingest goes on; PUT (ingest token) restores such a copy into an
// empty store. The read token already reads every delivery; a restore writes deliveries, the
// privilege of the ingest token (as backfill). One backup or restore runs at a time.
func (r *Receiver) backupEndpoint(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodPut {
		w.Header().Set("Allow", "GET, PUT")
		writeError(w, http.StatusMethodNotAllowed, "method", "use GET to take a backup, PUT to restore one")
		return
	}
	if req.Method == http.MethodGet && !r.readAllowed(w, req) {
		return
	}
	if req.Method == http.MethodPut && !r.ingestAuth.check(req) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="intuned-receiver"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "a restore needs the ingest token in the "+r.cfg.TokenHeader+" header")
		return
	}
	b, ok := r.st.(store.Backuper)
	if !ok {
		writeError(w, http.StatusNotImplemented, "not_supported",
			"this receiver stores in PostgreSQL: back the database up with pg_dump and restore it with pg_restore")
		return
	}
	if !r.backupMu.TryLock() {
		r.retryLater(w, http.StatusConflict, "backup_in_progress", "another backup or restore is running; retry later")
		return
	}
	defer r.backupMu.Unlock()
	if req.Method == http.MethodGet {
		r.backup(w, req, b)
	} else {
		r.restore(w, req, b)
	}
}

// backup takes a backup and streams it: hashed first (the file is local), then sent with its
// length and hash, then its space is given back (the file was never linked past Backup).
func (r *Receiver) backup(w http.ResponseWriter, req *http.Request, b store.Backuper) {
	start := time.Now()
	f, err := b.Backup(req.Context())
	if err != nil {
		r.backupFailed(w, "backup", err)
		return
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		r.backupFailed(w, "backup: read the copy", err)
		return
	}
	took := time.Since(start)
	w.Header().Set("Content-Type", "application/vnd.sqlite3")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Content-Disposition", `attachment; filename="receiver-`+start.UTC().Format("20060102T150405Z")+`.db"`)
	w.Header().Set(backupSHA256Header, hex.EncodeToString(h.Sum(nil)))
	w.WriteHeader(http.StatusOK)
	sent, err := io.Copy(w, f)
	r.log.Info("backup taken", "bytes", size, "sent", sent, "copySeconds", took.Seconds(),
		"totalSeconds", time.Since(start).Seconds(), "remote", req.RemoteAddr, "err", err)
}

type restoreResponse struct {
	Restored      int64  `json:"restored"`    // deliveries
	Quarantined   int64  `json:"quarantined"` // quarantined bodies
	SchemaVersion int    `json:"schemaVersion"`
	SHA256        string `json:"sha256"` // of the uploaded file, to compare with the backup's
}

// restore copies an uploaded backup into the store, when it is empty.
func (r *Receiver) restore(w http.ResponseWriter, req *http.Request, b store.Backuper) {
	start := time.Now()
	h := sha256.New()
	body := &uploadReader{r: req.Body, rc: http.NewResponseController(w), hash: h}
	res, err := b.Restore(req.Context(), body, req.ContentLength)
	switch {
	case body.err != nil && !errors.Is(err, store.ErrNotEmpty):
		writeError(w, http.StatusBadRequest, "read_error", "could not read the uploaded file: "+body.err.Error())
	case errors.Is(err, store.ErrNotEmpty):
		writeError(w, http.StatusConflict, "store_not_empty",
			"this receiver already holds deliveries; restore into a new WebhookReceiver, whose store is empty")
	case errors.Is(err, store.ErrInvalidBackup):
		r.log.Warn("restore refused", "err", err, "remote", req.RemoteAddr)
		writeError(w, http.StatusBadRequest, "invalid_backup", err.Error())
	case err != nil:
		r.backupFailed(w, "restore", err)
	default:
		r.log.Info("backup restored", "deliveries", res.Deliveries, "quarantined", res.Quarantined,
			"schemaVersion", res.SchemaVersion, "seconds", time.Since(start).Seconds(), "remote", req.RemoteAddr)
		writeJSON(w, http.StatusOK, restoreResponse{Restored: res.Deliveries, Quarantined: res.Quarantined,
			SchemaVersion: res.SchemaVersion, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
}

// backupFailed answers a backup or restore the store could not do: 507 when the volume lacks the
// space (a bigger volume or fewer stored bytes fix it, not a retry), else 503 with Retry-After.
func (r *Receiver) backupFailed(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, store.ErrFull) {
		r.log.Warn(what+" refused", "err", err)
		writeError(w, http.StatusInsufficientStorage, "insufficient_storage", err.Error())
		return
	}
	r.readFailed(w, what, err)
}

// uploadReader reads a restore's body: it hashes what it reads, keeps the first read error (so
// the answer can tell a broken upload from a bad file) and moves the read deadline on.
type uploadReader struct {
	r    io.Reader
	rc   *http.ResponseController
	hash io.Writer
	err  error
}

func (u *uploadReader) Read(p []byte) (int, error) {
	u.rc.SetReadDeadline(time.Now().Add(uploadIdle)) //nolint:errcheck // not every server supports it; its own timeout then applies
	n, err := u.r.Read(p)
	u.hash.Write(p[:n]) //nolint:errcheck // hashes do not fail
	if err != nil && err != io.EOF && u.err == nil {
		u.err = err
	}
	return n, err
}
